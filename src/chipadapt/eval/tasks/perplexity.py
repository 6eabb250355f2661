"""`perplexity`: token-weighted perplexity and bits per byte of any corpus JSONL or folder.

A split may take only the documents DAPT held out (`held_out: 0.02`, the same hash of the document
id as `data.val_fraction`), so a merged or SFT'd model is scored on exactly the documents its DAPT
run never trained on; `max_tokens` caps the tokens scored per split (whole windows, in document order).
With several splits not marked `general: true`, `domain_mean.bpb` is their unweighted mean and
`domain_all.bpb` the bits per byte of all their documents together.
Items are documents (`<split>/<doc id>`, with their summed NLL, tokens and bytes): the intervals
resample documents, since the tokens of one document are not independent. A held-out set has few
documents in some sources (one in picorv32), so a source's own interval can be degenerate; `domain_all.bpb`
pools every domain document and is the measure two models are compared on. `max_tokens_per_document`
spreads a split's token budget over more documents (more items, a tighter interval).
`max_chars_per_document` cuts each document's text before it is tokenized: two models with different
tokenizers are then scored on the same text (a token cap gives the one with the longer tokens more of
each document), so their bits per byte pair by document.
"""

import math

import torch
from omegaconf import DictConfig, OmegaConf

from chipadapt.data.holdout import held_out_mask
from chipadapt.data.sources import read_source, source_spec
from chipadapt.errors import ChipadaptError
from chipadapt.eval.intervals import mean_of_ratios
from chipadapt.eval.items import estimate, metric_fields, score_values, summarize
from chipadapt.eval.task_base import TaskBase, fit_to_context
from chipadapt.io.answer_journal import journal_for
from chipadapt.io.hf_dataset import PREFIX, SPLIT
from chipadapt.models.token_bytes import token_byte_lengths

# Keys of a split that choose documents; the rest is the source (SourceSpec).
SELECTION_KEYS = ("held_out",)
RESERVED_SPLIT_NAMES = ("domain_mean", "domain_all")


def dataset_source(values: dict, key: str) -> dict:
    """A split's source settings with its path read as every other evaluation path is:
    `hf:ID_OR_FOLDER[:SPLIT]` (io/hf_dataset.py) names a Hugging Face dataset and its split. (A
    .parquet/.arrow file or a save_to_disk folder is recognised by data/sources.py itself.)"""
    path, fmt = values.get("path"), values.get("format", "auto")
    if not isinstance(path, str):
        return values  # source_spec names what is wrong with it
    if path.startswith(PREFIX):
        if fmt not in ("auto", "hf"):
            raise ChipadaptError(
                f"{key}.format: {fmt!r} does not read a dataset named with hf: ({path}); leave format out or set hf"
            )
        match = SPLIT.match(path[len(PREFIX) :])
        named = match["split"]
        if named and values.get("split", named) != named:  # two places would name the split
            raise ChipadaptError(
                f"{key}.split: {values['split']!r} does not agree with the split that {key}.path names {named!r}; "
                "give it once"
            )
        return {**values, "path": match["path"], "format": "hf", **({"split": named} if named else {})}
    return values


class PerplexityTask(TaskBase):
    def __init__(
        self,
        splits: DictConfig,
        max_length: int,
        max_documents: int | None,
        max_tokens: int | None,
        max_tokens_per_document: int | None,
        max_chars_per_document: int | None,
    ):
        self.splits, self.held_out = {}, {}
        for name, spec in splits.items():
            if spec is None:  # eval.perplexity.splits.NAME=null drops a split
                continue
            if name in RESERVED_SPLIT_NAMES:  # their metrics would overwrite the pooled ones
                raise ChipadaptError(
                    f"eval.perplexity.splits.{name}: the name is taken by a pooled metric; rename the split"
                )
            key = f"eval.perplexity.splits.{name}"
            values = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec
            if not isinstance(values, dict):
                raise ChipadaptError(f"{key}: expected a source with a `path`, got {values!r}")
            self.held_out[name] = values.pop("held_out", None)
            self.splits[name] = source_spec(dataset_source(values, key), key)
        if not self.splits:
            raise ChipadaptError("eval.perplexity.splits: no split configured")
        self.max_length, self.max_documents, self.max_tokens = max_length, max_documents, max_tokens
        self.max_tokens_per_document = max_tokens_per_document
        self.max_chars_per_document = max_chars_per_document

    def inputs(self) -> list[tuple[str, str]]:
        return [(f"splits.{name}.path", str(spec.path)) for name, spec in self.splits.items()]

    def documents(self, name: str) -> list:
        docs = read_source(self.splits[name], f"eval.perplexity.splits.{name}")
        fraction = self.held_out[name]
        if fraction:
            mask = held_out_mask([d.doc_id for d in docs], float(fraction))
            docs = [d for d, keep in zip(docs, mask) if keep]
        docs = docs[: self.max_documents]
        if not docs:  # the split would report its counts and no ppl or bpb
            raise ChipadaptError(
                f"eval.perplexity.splits.{name}: no documents left of {self.splits[name].path} "
                f"(held_out={fraction}, max_documents={self.max_documents})"
            )
        return docs

    @staticmethod
    def _window_nll(model, piece: list[int], journal) -> float:
        """Summed negative log-likelihood of piece[1:] given what precedes each token in the piece; kept
        in the task's answer journal, so a rerun after a kill does not score the window again."""
        slot, found, nll = journal.ask(["window_nll", piece]) if journal is not None else (None, False, None)
        if found:
            return nll
        window = torch.tensor([piece], device=model.device)
        logits = model(input_ids=window[:, :-1]).logits.float()
        nll = float(torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum"))
        if journal is not None:
            journal.record(slot, nll)
        return nll

    @torch.no_grad()
    def run(self, model, tokenizer) -> dict[str, float]:
        results, self.items = {}, []
        journal = journal_for(model)  # answers given before an interruption (io/answer_journal.py)
        rows = model.get_output_embeddings().weight.shape[0]
        byte_lengths = token_byte_lengths(tokenizer, rows)
        max_length = fit_to_context(model, self.max_length, "perplexity")
        for name in self.splits:
            docs = self.documents(name)
            split_items, n_tokens, used = [], 0, 0
            for doc in docs:
                if self.max_tokens and n_tokens >= self.max_tokens:
                    break
                used += 1
                text = doc.text[: self.max_chars_per_document] if self.max_chars_per_document else doc.text
                ids = tokenizer(text, add_special_tokens=False).input_ids
                if self.max_tokens_per_document:
                    ids = ids[: self.max_tokens_per_document + 1]  # +1: the last scored token's target
                nll, n_bytes, doc_tokens = 0.0, 0, 0
                # Non-overlapping windows: each token is scored once, with the context of its window.
                for start in range(0, len(ids) - 1, max_length):
                    if self.max_tokens and n_tokens + doc_tokens >= self.max_tokens:
                        break
                    piece = ids[start : start + max_length + 1]
                    if len(piece) < 2:
                        continue
                    nll += self._window_nll(model, piece, journal)
                    targets = torch.tensor(piece[1:])
                    n_bytes += int(byte_lengths[targets].sum())
                    doc_tokens += targets.numel()
                n_tokens += doc_tokens
                if doc_tokens:
                    split_items.append(
                        {
                            "id": f"{name}/{doc.doc_id}",
                            "split": name,
                            "tokens": doc_tokens,
                            "bytes": n_bytes,
                            "scores": {
                                f"{name}.ppl": {"num": nll, "den": doc_tokens, "transform": "exp"},
                                f"{name}.bpb": {"num": nll / math.log(2), "den": max(n_bytes, 1)},
                            },
                        }
                    )
            if not split_items:  # every document shorter than two tokens: nothing was scored
                raise ChipadaptError(
                    f"eval.perplexity.splits.{name}: no document of {self.splits[name].path} has two tokens to score"
                )
            results.update(summarize(split_items))
            results[f"{name}.tokens"] = n_tokens
            results[f"{name}.documents"] = used
            self.items += split_items
        results["max_length"] = max_length
        domain = [name for name, spec in self.splits.items() if not spec.general and f"{name}.bpb" in results]
        if len(domain) > 1:
            # One number per model for sweeps: every domain source counts the same, however long.
            groups = [
                (
                    [v["num"] for v in score_values(self.items, f"{n}.bpb")],
                    [v["den"] for v in score_values(self.items, f"{n}.bpb")],
                )
                for n in domain
            ]
            results.update(metric_fields("domain_mean.bpb", mean_of_ratios(groups)))
            # The pooled measure: every domain document is one item of `domain_all.bpb`.
            for item in self.items:
                if item["split"] in domain:
                    item["scores"]["domain_all.bpb"] = item["scores"][f"{item['split']}.bpb"]
            results.update(metric_fields("domain_all.bpb", estimate(score_values(self.items, "domain_all.bpb"))))
        return results
