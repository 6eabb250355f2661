"""`perplexity`: token-weighted perplexity and bits per byte of any corpus JSONL or folder.

A split may take only the documents DAPT held out (`held_out: 0.02`, the same hash of the document
id as `data.val_fraction`), so a merged or SFT'd model is scored on exactly the documents its DAPT
run never trained on; `max_tokens` caps the tokens scored per split (whole windows, in document order).
With several splits not marked `general: true`, `domain_mean.bpb` is their unweighted mean.
"""

import math

import torch
from omegaconf import DictConfig, OmegaConf
from torchmetrics.text import Perplexity

from chipadapt.data.blend import held_out
from chipadapt.data.sources import SourceSpec, read_source
from chipadapt.errors import ChipadaptError
from chipadapt.models.token_bytes import token_byte_lengths

# Keys of a split that choose documents; the rest is the source (SourceSpec).
SELECTION_KEYS = ("held_out",)


class PerplexityTask:
    def __init__(self, splits: DictConfig, max_length: int, max_documents: int | None, max_tokens: int | None):
        self.splits, self.held_out = {}, {}
        for name, spec in splits.items():
            if spec is None:  # eval.perplexity.splits.NAME=null drops a split
                continue
            values = OmegaConf.to_container(spec, resolve=True)
            self.held_out[name] = values.pop("held_out", None)
            try:
                self.splits[name] = SourceSpec(**values)
            except TypeError as err:
                raise ChipadaptError(f"eval.perplexity.splits.{name}: {err}") from None
        if not self.splits:
            raise ChipadaptError("eval.perplexity.splits: no split configured")
        self.max_length, self.max_documents, self.max_tokens = max_length, max_documents, max_tokens

    def documents(self, name: str) -> list:
        docs = read_source(self.splits[name], f"eval.perplexity.splits.{name}")
        fraction = self.held_out[name]
        if fraction:
            mask = held_out([d.doc_id for d in docs], float(fraction))
            docs = [d for d, keep in zip(docs, mask) if keep]
        return docs[: self.max_documents]

    @torch.no_grad()
    def run(self, model, tokenizer) -> dict[str, float]:
        results = {}
        rows = model.get_output_embeddings().weight.shape[0]
        byte_lengths = token_byte_lengths(tokenizer, rows)
        for name in self.splits:
            docs = self.documents(name)
            metric, nll, n_bytes, n_tokens, used = Perplexity().to(model.device), 0.0, 0, 0, 0
            for doc in docs:
                if self.max_tokens and n_tokens >= self.max_tokens:
                    break
                used += 1
                ids = tokenizer(doc.text, add_special_tokens=False).input_ids
                # Non-overlapping windows: each token is scored once, with the context of its window.
                for start in range(0, len(ids) - 1, self.max_length):
                    if self.max_tokens and n_tokens >= self.max_tokens:
                        break
                    window = torch.tensor([ids[start : start + self.max_length + 1]], device=model.device)
                    if window.shape[1] < 2:
                        continue
                    logits = model(input_ids=window[:, :-1]).logits.float()
                    targets = window[:, 1:]
                    metric.update(logits, targets)
                    nll += float(torch.nn.functional.cross_entropy(logits[0], targets[0], reduction="sum"))
                    n_bytes += int(byte_lengths[targets.cpu()].sum())
                    n_tokens += targets.numel()
            results[f"{name}.ppl"] = float(metric.compute())
            results[f"{name}.bpb"] = nll / max(n_bytes, 1) / math.log(2)
            results[f"{name}.tokens"] = n_tokens
            results[f"{name}.documents"] = used
        domain = [name for name, spec in self.splits.items() if not spec.general]
        if len(domain) > 1:
            # One number per model for sweeps: every domain source counts the same, however long.
            results["domain_mean.bpb"] = sum(results[f"{n}.bpb"] for n in domain) / len(domain)
        return results
