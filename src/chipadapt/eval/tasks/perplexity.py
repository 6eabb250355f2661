"""`perplexity`: token-weighted perplexity and bits per byte of any corpus JSONL or folder."""

import math

import torch
from omegaconf import DictConfig, OmegaConf
from torchmetrics.text import Perplexity

from chipadapt.data.sources import SourceSpec, read_source
from chipadapt.models.token_bytes import token_byte_lengths


class PerplexityTask:
    def __init__(self, splits: DictConfig, max_length: int, max_documents: int | None):
        self.splits = {name: SourceSpec(**OmegaConf.to_container(spec, resolve=True)) for name, spec in splits.items()}
        self.max_length, self.max_documents = max_length, max_documents

    @torch.no_grad()
    def run(self, model, tokenizer) -> dict[str, float]:
        results = {}
        rows = model.get_output_embeddings().weight.shape[0]
        byte_lengths = token_byte_lengths(tokenizer, rows)
        for name, spec in self.splits.items():
            docs = read_source(spec, f"eval.perplexity.splits.{name}")[: self.max_documents]
            metric, nll, n_bytes, n_tokens = Perplexity().to(model.device), 0.0, 0, 0
            for doc in docs:
                ids = tokenizer(doc.text, add_special_tokens=False).input_ids
                # Non-overlapping windows: each token is scored once, with the context of its window.
                for start in range(0, len(ids) - 1, self.max_length):
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
            results[f"{name}.documents"] = len(docs)
        return results
