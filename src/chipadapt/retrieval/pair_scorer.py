"""A cross-encoder: one relevance score per (query, passage) pair, read from both texts at once.

It is a Hugging Face sequence-classification model with one output, so a trained one is a plain
folder that `AutoModelForSequenceClassification` and sentence-transformers' `CrossEncoder` open.
Initialised from a bi-encoder's folder (MiniLM), the transformer and its pooler keep their trained
weights and only the one-unit scoring head starts fresh; anything else missing is an error.
"""

import logging
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory
from chipadapt.models.safe_load import safe_from_pretrained, safe_tokenizer
from chipadapt.retrieval.encoder import resolve_encoder_folder

log = logging.getLogger(__name__)
HEAD_PREFIXES = ("classifier.", "score.")  # the scoring head's names across encoder families


class PairScorer(nn.Module):
    head_parameters = tuple(f"model.{prefix}" for prefix in HEAD_PREFIXES)  # names of the new head's parameters

    def __init__(self, path: str | None, package: str | None, max_tokens: int, from_encoder: bool, reset_pooler: bool):
        """`path` (a folder) or `package` (a PyPI model package); `from_encoder`: a bi-encoder to start
        from (only the head is new) rather than a trained reranker (every weight must be there).
        `reset_pooler` (with `from_encoder`): start an untrained BERT [CLS] pooler as the identity (`_reset_pooler`)."""
        super().__init__()
        self.folder, self.max_tokens = resolve_encoder_folder(path, package), max_tokens
        self.model = safe_from_pretrained(
            AutoModelForSequenceClassification,
            self.folder,
            "reranker",
            complete=not from_encoder,
            num_labels=1,
        )
        if from_encoder:
            self._check_only_head_is_new()
            if reset_pooler:
                self._reset_pooler()
        self.tokenizer = safe_tokenizer(self.folder, "reranker")

    def _check_only_head_is_new(self) -> None:
        from safetensors import safe_open

        with safe_open(str(self.folder / "model.safetensors"), "pt") as f:
            loaded = {k.split(".", 1)[1] if k.split(".", 1)[0] == self.model.base_model_prefix else k for k in f.keys()}
        body = {
            k.split(".", 1)[1] if k.split(".", 1)[0] == self.model.base_model_prefix else k
            for k in self.model.state_dict()
            if not k.startswith(HEAD_PREFIXES)
        }
        missing = sorted(body - loaded - {"embeddings.position_ids"})
        if missing:
            raise ChipadaptError(
                f"reranker.encoder: {self.folder} lacks encoder weights {', '.join(missing[:3])}; "
                "a reranker starts from a trained encoder"
            )

    def _reset_pooler(self) -> None:
        """A bi-encoder trained with mean pooling never trained BERT's [CLS] pooler, which the
        sequence-classification head reads: in all-MiniLM-L6-v2 it is still at its initialisation
        (weights of std 0.009, bias 0), so it passes the head almost nothing and the body almost no
        gradient, and a reranker trained from it stayed at chance (experiments/LOG.md, 2026-12-04). As
        the identity (tanh of the [CLS] state) it passes the body's features through from the first step."""
        pooler = getattr(getattr(self.model, self.model.base_model_prefix, None), "pooler", None)
        dense = getattr(pooler, "dense", None)
        if not isinstance(dense, nn.Linear) or dense.in_features != dense.out_features:
            # RoBERTa, MPNet, ELECTRA: no pooler (their head has its own dense layer, trained with it)
            log.info("reranker.reset_pooler: %s has no BERT-style pooler; nothing reset", self.folder)
            return
        if dense.bias is None or dense.bias.any():
            # BERT's own checkpoints trained it on next-sentence prediction, a pair task: kept
            log.info("reranker.reset_pooler: %s's pooler was trained (bias not zero); kept", self.folder)
            return
        with torch.no_grad():
            dense.weight.copy_(torch.eye(dense.in_features))
        log.info("reranker.reset_pooler: %s's untrained [CLS] pooler starts as the identity", self.folder)

    def tokenize(self, queries: list[str], passages: list[str]) -> dict[str, torch.Tensor]:
        # The passage is cut, never the query: the query decides what in the passage matters.
        return dict(
            self.tokenizer(
                queries,
                passages,
                padding=True,
                truncation="only_second",
                max_length=self.max_tokens,
                return_tensors="pt",
            )
        )

    def forward(self, **batch) -> torch.Tensor:
        return self.model(**batch).logits.squeeze(-1).float()

    @torch.no_grad()
    def score(self, queries: list[str], passages: list[str], batch_size: int) -> list[float]:
        """Scores of the pairs (queries[i], passages[i]), in batches on the model's device."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out: list[float] = []
        for start in range(0, len(queries), batch_size):
            batch = self.tokenize(queries[start : start + batch_size], passages[start : start + batch_size])
            out += self(**{k: v.to(device) for k, v in batch.items()}).tolist()
        self.train(was_training)
        return out

    def save(self, dest: str | Path) -> Path:
        with atomic_directory(dest, "train") as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
        return Path(dest)
