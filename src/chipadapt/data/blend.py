"""Blending: which documents of which source go into training, how often, in what order.

A source contributes `weight * epochs` of its training tokens: whole copies of its training documents
for the integer part, and for the fraction a seeded subset of documents whose tokens come nearest to
that fraction of the source's tokens (a token budget, not a document count: 0.5 of a source whose one
netlist holds 99.9% of its tokens took half its documents, and by chance that file, 99.9% of the
tokens). Documents are not cut, so a source of a few very unequal documents cannot always meet its
budget: a source whose blended tokens are more than 25% off `weight x epochs x tokens` is warned about,
and the blend table shows each source's target share beside its actual one. All copies are shuffled
together, so the order is fully decided by the seed and a resumed run sees the same stream.
A source given a weight above 0 is always in the blend: a fraction whose budget no document comes near
(0.5 of one document) takes one, with a warning naming the source. The user named the source to
train on it, and a weight says how much, never whether; leaving it out silently (as it was: `blended
tokens 0`) or by a coin toss made the weight a switch the user never set. A source with no training
document at all (each one held out for validation) adds nothing, and is warned about too.
"""

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from rich.table import Table

from chipadapt.data.token_cache import TokenizedSource

log = logging.getLogger(__name__)


# A source whose blended tokens are further than this (relative) from weight x epochs x tokens is warned about.
FAR_FROM_TARGET = 0.25


@dataclass
class BlendRow:
    name: str
    train_docs: int
    val_docs: int
    train_tokens: int  # tokens of the held-in documents, once
    multiplier: float  # weight * epochs
    blended_tokens: int  # tokens this source contributes to training
    share: float = 0.0  # of all blended tokens
    target_tokens: float = 0.0  # multiplier * train_tokens: what the weight asks for
    target_share: float = 0.0  # of all target tokens
    val_duplicates_dropped: int = 0  # training documents left out: their text is a held-out one's (datamodule)


def copies(multiplier: float, examples: int, key: str = "a data source") -> tuple[int, int]:
    """How a source with `examples` training examples enters the blend at `weight * epochs`: whole
    copies for the integer part, plus a seeded random subset of this many examples for the fraction;
    at least one example where the weight is above 0 (module docstring), warned about under `key`.
    By example count: SFT's conversations; DAPT's documents go by tokens (token_subset)."""
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


def token_subset(
    lengths: np.ndarray, train_idx: np.ndarray, fraction: float, rng: np.random.Generator, at_least_one: bool
) -> np.ndarray:
    """The documents (of train_idx) for the fractional part of a multiplier: in a seeded order, each that
    still fits in `fraction` of the source's tokens, then the one left whose length brings the total
    nearest the budget if it brings it nearer. `at_least_one`: take the nearest document even when
    none brings the total nearer (a weight above 0 keeps a source in the blend)."""
    if fraction <= 0 or not len(train_idx):
        return np.zeros(0, dtype=np.int64)
    order = rng.permutation(train_idx)
    sizes = lengths[order]
    left = fraction * float(sizes.sum())
    taken = np.zeros(len(order), dtype=bool)
    smallest = int(sizes.min())
    for i, size in enumerate(sizes):
        if left < smallest:  # nothing else fits: no need to walk a large source to its end
            break
        if size <= left:
            taken[i] = True
            left -= size
    rest = np.flatnonzero(~taken)
    if len(rest):
        nearest = rest[int(np.argmin(np.abs(sizes[rest] - left)))]
        if sizes[nearest] < 2 * left or (at_least_one and not taken.any()):
            taken[nearest] = True
    return order[taken]


def _warn_far_from_target(name: str, row: BlendRow, largest: int) -> None:
    log.warning(
        "data.sources.%s: blended %s tokens, %.1f%% of what weight x epochs %g of its %s training tokens asks "
        "for (%s): whole documents cannot come nearer (its largest holds %s tokens); split large documents "
        "(curation), or set a weight its documents can meet",
        name,
        f"{row.blended_tokens:,}",
        100 * row.blended_tokens / row.target_tokens,
        row.multiplier,
        f"{row.train_tokens:,}",
        f"{round(row.target_tokens):,}",
        f"{largest:,}",
    )


def blend_order(
    sources: list[tuple[str, TokenizedSource, np.ndarray, float]], seed: int
) -> tuple[np.ndarray, list[BlendRow]]:
    """sources: (name, tokenized, train_doc_indices, multiplier). Returns rows of (source, doc) and a report."""
    rng = np.random.default_rng(seed)
    parts, rows = [], []
    for src_index, (name, tok, train_idx, multiplier) in enumerate(sources):
        train_idx = np.asarray(train_idx, dtype=np.int64)
        lengths = np.diff(tok.offsets)
        whole = int(np.floor(multiplier))
        if multiplier > 0 and not len(train_idx):
            log.warning(
                "data.sources.%s: weight x epochs %g but no training document (%d, all held out for validation): "
                "it adds nothing to training",
                name,
                multiplier,
                tok.num_docs,
            )
        picked = [train_idx] * whole
        extra = token_subset(lengths, train_idx, multiplier - whole, rng, at_least_one=not whole)
        taken_one = multiplier > 0 and not whole and len(train_idx) and len(extra) == 1
        if len(extra):
            picked.append(extra)
        docs = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
        parts.append(np.stack([np.full(len(docs), src_index), docs], axis=1))
        train_tokens = int(lengths[train_idx].sum())
        row = BlendRow(
            name=name,
            train_docs=len(train_idx),
            val_docs=tok.num_docs - len(train_idx),
            train_tokens=train_tokens,
            multiplier=multiplier,
            blended_tokens=int(lengths[docs].sum()) if len(docs) else 0,
            target_tokens=multiplier * train_tokens,
        )
        rows.append(row)
        off = row.target_tokens and abs(row.blended_tokens - row.target_tokens) > FAR_FROM_TARGET * row.target_tokens
        if off and taken_one and row.blended_tokens > row.target_tokens:
            log.warning(
                "data.sources.%s: weight x epochs %g of %d training document(s) (%s tokens) asks for %s tokens, "
                "less than any document comes near; it takes 1 (%s tokens: a weight above 0 keeps a source in "
                "the blend; weight=0 or =null leaves it out)",
                name,
                multiplier,
                len(train_idx),
                f"{train_tokens:,}",
                f"{round(row.target_tokens):,}",
                f"{row.blended_tokens:,}",
            )
        elif off:
            _warn_far_from_target(name, row, int(lengths[train_idx].max()))
    order = np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 2), dtype=np.int64)
    order = order[rng.permutation(len(order))]
    total = sum(r.blended_tokens for r in rows) or 1
    target = sum(r.target_tokens for r in rows) or 1
    for row in rows:
        row.share = row.blended_tokens / total
        row.target_share = row.target_tokens / target
    return order, rows


def order_digest(parts: Iterable[np.ndarray]) -> str:
    """A short hash of a training order (the blend's rows of (source, document), or SFT's samples' token ids
    in order), recorded in checkpoints: a resume whose data gives another order (copies of held-out texts
    dropped since, a fraction drawn otherwise, another corpus) trains on another stream from the resumed
    step, which stages/resume_settings.py tells."""
    digest = hashlib.sha256()
    for part in parts:
        values = np.asarray(part, dtype=np.int64)
        digest.update(np.int64(values.size).tobytes())  # where one part ends, so [1, 2][3] is not [1][2, 3]
        digest.update(values.tobytes())
    return digest.hexdigest()[:16]


def blend_table(rows: list[BlendRow], packing_efficiency: float, sequences: int, seq_len: int) -> Table:
    table = Table(
        title=f"Training blend: {sequences} sequences x {seq_len} tokens, packing {100 * packing_efficiency:.2f}%"
    )
    columns = (
        "source",
        "train docs",
        "val docs",
        "tokens",
        "weight x epochs",
        "blended tokens",
        "target share",
        "share",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "source" else "right")
    for r in rows:
        table.add_row(
            r.name,
            str(r.train_docs),
            str(r.val_docs),
            f"{r.train_tokens:,}",
            f"{r.multiplier:g}",
            f"{r.blended_tokens:,}",
            f"{100 * r.target_share:.1f}%",  # what weight x epochs x tokens asks for, beside what whole documents gave
            f"{100 * r.share:.1f}%",
        )
    return table
