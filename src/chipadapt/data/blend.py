"""Blending: which documents of which source go into training, how often, in what order.

A source contributes `weight * epochs` copies of its training documents: whole copies for the
integer part and a seeded random subset for the fraction. All copies are shuffled together, so
the order is fully decided by the seed and a resumed run sees the same stream.
A source given a weight above 0 is always in the blend: a fraction of a few documents that rounds to
none (0.5 of one document) takes one, with a warning naming the source. The user named the source to
train on it, and a weight says how much, never whether; leaving it out silently (as it was: `blended
tokens 0`) or by a coin toss made the weight a switch the user never set. A source with no training
document at all (each one held out for validation) adds nothing, and is warned about too.
"""

import logging
from dataclasses import dataclass

import numpy as np
from rich.table import Table

from chipadapt.data.token_cache import TokenizedSource

log = logging.getLogger(__name__)


@dataclass
class BlendRow:
    name: str
    train_docs: int
    val_docs: int
    train_tokens: int  # tokens of the held-in documents, once
    multiplier: float  # weight * epochs
    blended_tokens: int  # tokens this source contributes to training
    share: float = 0.0  # of all blended tokens


def copies(multiplier: float, examples: int, key: str = "a data source") -> tuple[int, int]:
    """How a source with `examples` training examples enters the blend at `weight * epochs`: whole
    copies for the integer part, plus a seeded random subset of this many examples for the fraction;
    at least one example where the weight is above 0 (module docstring), warned about under `key`."""
    whole = int(np.floor(multiplier))
    extra = int(round((multiplier - whole) * examples))
    if multiplier > 0 and examples and not whole and not extra:
        log.warning(
            "%s: weight x epochs %g of %d training example(s) rounds to none; it takes 1 (a weight above 0 "
            "keeps a source in the blend; weight=0 or =null leaves it out)",
            key,
            multiplier,
            examples,
        )
        extra = 1
    return whole, extra


def blend_order(
    sources: list[tuple[str, TokenizedSource, np.ndarray, float]], seed: int
) -> tuple[np.ndarray, list[BlendRow]]:
    """sources: (name, tokenized, train_doc_indices, multiplier). Returns rows of (source, doc) and a report."""
    rng = np.random.default_rng(seed)
    parts, rows = [], []
    for src_index, (name, tok, train_idx, multiplier) in enumerate(sources):
        whole, count = copies(multiplier, len(train_idx), f"data.sources.{name}")
        if multiplier > 0 and not len(train_idx):
            log.warning(
                "data.sources.%s: weight x epochs %g but no training document (%d, all held out for validation): "
                "it adds nothing to training",
                name,
                multiplier,
                tok.num_docs,
            )
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
