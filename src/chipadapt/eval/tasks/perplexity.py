"""`perplexity`: token-weighted perplexity and bits per byte of any corpus JSONL or folder.

A split may take only the documents DAPT held out (`held_out: 0.02`, the same hash of the document
id as `data.val_fraction`), so a merged or SFT'd model is scored on exactly the documents its DAPT
run never trained on. A split's `path` may list several sources (the sources of a DAPT blend), each
held out by its own hash as DAPT does, pooled in one split: the default `domain` split is the four
documents DAPT on the sample corpus holds out, one per source. Whatever the split, the documents the
evaluated model was trained on (by its runs' records: eval/training_overlap.py) are counted in
`trained_on_overlap` and warned about: a figure on them is in-sample. `max_tokens` caps the tokens
scored per split (whole windows, in document order).
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
Every byte of a document is scored: its first token is predicted after the tokenizer's document start
(its bos token, else its eos token), as a model sees a text begin in pretraining (DAPT's packing puts
model.doc_separator before each document but the first). Left unscored, the first token took its bytes out of
the figure: 1 byte (`B`) with one tokenizer and 3 (`Bug`) with another, which favoured the tokenizer with
the longer first token. Results and items say so (`first_token: scored`): a run from before, which
left it out, does not pair with one after (eval/same_items.py). Nor does one from before a token's bytes were
its piece's own (`byte_count: piece_utf8`, models/token_bytes.py), recorded where the rule counts otherwise
(a SentencePiece-style vocabulary; byte-level BPE counts as it always did and carries no mark). The space a
Llama-2-style tokenizer prepends to a text (its dummy prefix) is no byte of the document: taken off its bytes,
so a document counts the bytes of its text whatever the tokenizer.
"""

import logging
import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from chipadapt.data.holdout import held_out_mask
from chipadapt.data.source_spec import SourceSpec, source_spec
from chipadapt.data.sources import Document, read_source
from chipadapt.errors import ChipadaptError
from chipadapt.eval.intervals import mean_of_ratios
from chipadapt.eval.items import estimate, metric_fields, score_values, summarize
from chipadapt.eval.task_base import TaskBase, fit_to_context, item_bar
from chipadapt.eval.training_overlap import TrainingOverlap
from chipadapt.io.answer_journal import journal_for
from chipadapt.io.hf_dataset import PREFIX, SPLIT
from chipadapt.models.token_bytes import added_space_bytes, byte_count_rule, token_byte_lengths
from chipadapt.scoring_rules import BYTE_COUNT, FIRST_TOKEN, FIRST_TOKEN_SCORED

log = logging.getLogger(__name__)

# Keys of a split that choose documents; the rest is the source (SourceSpec).
SELECTION_KEYS = ("held_out",)
RESERVED_SPLIT_NAMES = ("domain_mean", "domain_all")


def document_start(tokenizer) -> int:
    """The token a document's first token is predicted after: the tokenizer's bos, else its eos, the
    prefix lm-evaluation-harness's HF backend gives a rolling log-likelihood (`HFLM.prefix_token_id`)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    raise ChipadaptError(
        "perplexity: the model's tokenizer has neither a bos nor an eos token, so a document's first token "
        "has nothing to be predicted after; give the tokenizer one (tokenizer_config.json bos_token)"
    )


def dataset_source(values: dict, key: str) -> dict:
    """A split's source settings with its path read as every other evaluation path is:
    `hf:ID_OR_FOLDER[:SPLIT]` (io/hf_dataset.py) names a Hugging Face dataset and its split. (A
    .parquet/.arrow file or a save_to_disk folder is recognised by data/source_spec.py itself.)"""
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


def paths(values: dict, key: str) -> list:
    """A split's sources: its `path`, or each of a list of paths (the same settings for each), so one
    split can pool the held-out documents of every source of a DAPT blend."""
    path = values.get("path")
    if isinstance(path, (list, tuple)):
        if not path:
            raise ChipadaptError(f"{key}.path: an empty list; give a path or a list of paths")
        return list(path)
    return [path]  # one path, or a missing one: source_spec names what is wrong


def source_labels(specs: list[SourceSpec]) -> list[str]:
    """The prefix of each source's item ids: none for a single source (ids as before), else the source's
    file or folder name (`docs/`, `bug_threads.jsonl/`), numbered where two share a name."""
    if len(specs) == 1:
        return [""]
    names = [Path(str(spec.path)).name or str(spec.path) for spec in specs]
    return [f"{n}/" if names.count(n) == 1 else f"{n}#{i}/" for i, n in enumerate(names)]


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
            self.splits[name] = [
                source_spec(dataset_source({**values, "path": p}, key), key) for p in paths(values, key)
            ]
        if not self.splits:
            raise ChipadaptError("eval.perplexity.splits: no split configured")
        self.max_length, self.max_documents, self.max_tokens = max_length, max_documents, max_tokens
        self.max_tokens_per_document = max_tokens_per_document
        self.max_chars_per_document = max_chars_per_document

    def inputs(self) -> list[tuple[str, str]]:
        return [
            (f"splits.{name}.path" + (f".{i}" if len(specs) > 1 else ""), str(spec.path))
            for name, specs in self.splits.items()
            for i, spec in enumerate(specs)
        ]

    def where(self, name: str) -> str:
        return ", ".join(str(spec.path) for spec in self.splits[name])

    def sourced_documents(self, name: str) -> list[tuple[SourceSpec, str, Document]]:
        """(source, item id, document) of the documents a split scores, in order. `held_out` picks each
        source's documents by DAPT's rule (data/holdout.py: per source, a hash of the document id); a
        split of several sources names each document by its source too (`rtl/kes_uart_tx.sv`)."""
        specs, fraction, chosen = self.splits[name], self.held_out[name], []
        labels, total = source_labels(specs), 0
        for spec, label in zip(specs, labels):
            docs = read_source(spec, f"eval.perplexity.splits.{name}")
            total += len(docs)
            if fraction:
                mask = held_out_mask([d.doc_id for d in docs], float(fraction))
                docs = [d for d, keep in zip(docs, mask) if keep]
            chosen += [(spec, f"{name}/{label}{d.doc_id}", d) for d in docs]
        if fraction:  # said, since a path given on the command line keeps the default held_out
            log.info(
                "perplexity: split %r scores the %d of %d documents that DAPT with data.val_fraction=%s holds out "
                "(held_out; eval.perplexity.splits.%s.held_out=null scores them all)",
                name,
                len(chosen),
                total,
                fraction,
                name,
            )
        chosen = chosen[: self.max_documents]
        if not chosen:  # the split would report its counts and no ppl or bpb
            raise ChipadaptError(
                f"eval.perplexity.splits.{name}: no documents left of {self.where(name)} "
                f"(held_out={fraction}, max_documents={self.max_documents})"
            )
        return chosen

    def documents(self, name: str) -> list[Document]:
        return [doc for _, _, doc in self.sourced_documents(name)]

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

    def _mark_trained_on(self, overlap: TrainingOverlap, name: str, scored: list, items: list[dict]) -> int:
        """How many of a split's scored documents the model was trained on; each such item says so
        (`trained_on: true`), and a warning names the split, the count and the run that trained on them."""
        ids, runs = set(), []
        for spec in self.splits[name]:
            mine = [(item_id, doc) for s, item_id, doc in scored if s is spec]
            flags, where = overlap.trained_on(spec, [doc for _, doc in mine])
            ids |= {item_id for (item_id, _), flag in zip(mine, flags) if flag}
            runs += where
        marked = [item for item in items if item["id"] in ids]  # documents of no token were not scored
        for item in marked:
            item["trained_on"] = True
        if marked:
            log.warning(
                "perplexity: %d of the %d documents scored in split %r were TRAINED ON by this model (%s): "
                "its %s.ppl and %s.bpb are in-sample, not held out (results: perplexity.trained_on_overlap). "
                "Score only the documents the run held out: eval.perplexity.splits.%s.held_out=<its data.val_fraction>",
                len(marked),
                len(scored),
                name,
                "; ".join(dict.fromkeys(runs)),
                name,
                name,
                name,
            )
        return len(marked)

    @torch.no_grad()
    def run(self, model, tokenizer) -> dict[str, float]:
        results, self.items = {}, []
        journal = journal_for(model)  # answers given before an interruption (io/answer_journal.py)
        rows = model.get_output_embeddings().weight.shape[0]
        byte_lengths = token_byte_lengths(tokenizer, rows)
        # The dummy prefix's bytes before a text that does not / does start with a space (0, 0: none added).
        added_space = added_space_bytes(tokenizer, byte_lengths)
        max_length = fit_to_context(model, self.max_length, "perplexity")
        overlap = TrainingOverlap(getattr(model, "name_or_path", None))
        start_id = document_start(tokenizer)
        log.info(
            "perplexity: each document's first token is scored after %r (the tokenizer's %s token)",
            tokenizer.convert_ids_to_tokens(start_id),
            "bos" if start_id == tokenizer.bos_token_id else "eos",
        )
        trained_on = {}
        for name in self.splits:
            chosen = self.sourced_documents(name)
            split_items, n_tokens, used = [], 0, 0
            bar = item_bar(len(chosen), f"{self.label('perplexity')} {name}")
            for _, item_id, doc in chosen:
                if self.max_tokens and n_tokens >= self.max_tokens:
                    break
                used += 1
                bar.update(1)
                text = doc.text[: self.max_chars_per_document] if self.max_chars_per_document else doc.text
                # The document start is context only (never a target): every token of the text is scored.
                ids = [start_id, *tokenizer(text, add_special_tokens=False).input_ids]
                if self.max_tokens_per_document:
                    ids = ids[: self.max_tokens_per_document + 1]  # +1: the document start
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
                if doc_tokens:  # the first window, with the first token's prepended space, was scored
                    n_bytes -= added_space[text.startswith(" ")]
                    split_items.append(
                        {
                            "id": item_id,
                            "split": name,
                            "tokens": doc_tokens,
                            "bytes": n_bytes,
                            FIRST_TOKEN: FIRST_TOKEN_SCORED,
                            "scores": {
                                f"{name}.ppl": {"num": nll, "den": doc_tokens, "transform": "exp"},
                                f"{name}.bpb": {"num": nll / math.log(2), "den": max(n_bytes, 1)},
                            },
                        }
                    )
            bar.close()
            if not split_items:  # every document empty: nothing was scored
                raise ChipadaptError(
                    f"eval.perplexity.splits.{name}: no document of {self.where(name)} has a token to score"
                )
            results.update(summarize(split_items))
            results[f"{name}.tokens"] = n_tokens
            results[f"{name}.documents"] = used
            if overlap.known:
                trained_on[name] = self._mark_trained_on(overlap, name, chosen[:used], split_items)
            self.items += split_items
        if overlap.known:  # checked: 0 says none of a split's documents was trained on
            results["trained_on_overlap"] = trained_on
        results["max_length"] = max_length
        results[FIRST_TOKEN] = FIRST_TOKEN_SCORED
        if rule := byte_count_rule(tokenizer):  # none where token bytes count as they always did
            results[BYTE_COUNT] = rule
        results["first_token_context"] = tokenizer.convert_ids_to_tokens(start_id)
        domain = [name for name, specs in self.splits.items() if not specs[0].general and f"{name}.bpb" in results]
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
