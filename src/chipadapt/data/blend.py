"""Blending: which documents of which source go into training, how often, in what order.

A source contributes `weight * epochs` copies of its training documents: whole copies for the
integer part and a seeded random subset for the fraction. All copies are shuffled together, so
the order is fully decided by the seed and a resumed run sees the same stream.
"""

from dataclasses import dataclass

import numpy as np
from rich.table import Table

from chipadapt.data.token_cache import TokenizedSource


@dataclass
class BlendRow:
    name: str
    train_docs: int
    val_docs: int
    train_tokens: int  # tokens of the held-in documents, once
    multiplier: float  # weight * epochs
    blended_tokens: int  # tokens this source contributes to training
    share: float = 0.0  # of all blended tokens


def copies(multiplier: float, examples: int) -> tuple[int, int]:
    """How a source with `examples` training examples enters the blend at `weight * epochs`: whole
    copies for the integer part, plus a seeded random subset of this many examples for the fraction."""
    whole = int(np.floor(multiplier))
    return whole, int(round((multiplier - whole) * examples))


def blend_order(
    sources: list[tuple[str, TokenizedSource, np.ndarray, float]], seed: int
) -> tuple[np.ndarray, list[BlendRow]]:
    """sources: (name, tokenized, train_doc_indices, multiplier). Returns rows of (source, doc) and a report."""
    rng = np.random.default_rng(seed)
    parts, rows = [], []
    for src_index, (name, tok, train_idx, multiplier) in enumerate(sources):
        whole, count = copies(multiplier, len(train_idx))
        picked = [train_idx] * whole
        if multiplier > whole and len(train_idx):
            picked.append(rng.choice(train_idx, size=count, replace=False))
        docs = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
        parts.append(np.stack([np.full(len(docs), src_index), docs], axis=1))
        lengths = np.diff(tok.offsets)
        rows.append(
            BlendRow(
                name=name,
                train_docs=len(train_idx),
                val_docs=tok.num_docs - len(train_idx),
                train_tokens=int(lengths[train_idx].sum()),
                multiplier=multiplier,
                blended_tokens=int(lengths[docs].sum()) if len(docs) else 0,
            )
        )
    order = np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 2), dtype=np.int64)
    order = order[rng.permutation(len(order))]
    total = sum(r.blended_tokens for r in rows) or 1
    for row in rows:
        row.share = row.blended_tokens / total
    return order, rows


def blend_table(rows: list[BlendRow], packing_efficiency: float, sequences: int, seq_len: int) -> Table:
    table = Table(
        title=f"Training blend: {sequences} sequences x {seq_len} tokens, packing {100 * packing_efficiency:.2f}%"
    )
    for column in ("source", "train docs", "val docs", "tokens", "weight x epochs", "blended tokens", "share"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for r in rows:
        table.add_row(
            r.name,
            str(r.train_docs),
            str(r.val_docs),
            f"{r.train_tokens:,}",
            f"{r.multiplier:g}",
            f"{r.blended_tokens:,}",
            f"{100 * r.share:.1f}%",
        )
    return table
