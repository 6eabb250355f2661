"""A training run's final validation as per-item records (eval/items.py's format), written to its run
folder as `train.val_items.jsonl` once the run is done: what compare.py pairs two training runs on
(two trials of a search validate the same held-out documents), as it pairs two evaluations.

One record per held-out item (a document for DAPT, a conversation for SFT) and split, from the item
sums the causal LM keeps (modules/val_items.py): id `<split>/<item>` (the item's place in the split's
validation set, the same in every run that read the same text: compare.py checks that first, by the
runs' recorded validation fingerprints), its `split`, `tokens` and `bytes` (what eval/same_items.py
checks an item by), and its scores named as the run's metrics (`val/domain/bpb`), each the ratio whose
sums over items give the logged figure. Where the split's validation predicted every token of its text
(data/val_text.py's record says `first_token: scored`), each record says so too, as evaluate.py's
perplexity items do: two tokenizers' records of a whole document then carry the same bytes, and the
document the byte budget cut carries `cut_token_bytes`, the bytes within which two tokenizers' cuts agree
(eval/same_items.py)."""

import math
from pathlib import Path

import numpy as np

from chipadapt.eval.items import VALIDATION_TASK, write_items
from chipadapt.eval.same_items import ALL_BYTES
from chipadapt.modules.val_figures import ratio_parts
from chipadapt.modules.val_items import BYTES, ITEM, TOKENS


def _marks(text: dict | None, item: int) -> dict:
    """What a split's validation text record (data/val_text.py) says of how item `item` was scored."""
    if not text or text.get(ALL_BYTES[0]) != ALL_BYTES[1]:
        return {}
    cut = text.get("cut_token_bytes", 0) and item == text.get("documents", 0) - 1  # the last one read
    return {ALL_BYTES[0]: ALL_BYTES[1], **({"cut_token_bytes": text["cut_token_bytes"]} if cut else {})}


def validation_records(
    tables: dict[str, np.ndarray], texts: dict[str, dict] | None = None, groups: dict[str, list[str]] | None = None
) -> list[dict]:
    """{split: item table} -> one record per (split, item). A non-finite sum (diverged weights) is left
    unscored: no paired test reads it, and strict JSON cannot hold it. `texts`: the datamodule's record of
    each split's validation text, where it keeps one (DAPT's; SFT's conversations have none). `groups`: each
    split's item -> group (SFT: the conversation's group_by value, OASST's tree), as `group`: items of one
    group are not independent draws: compare.py's paired test resamples or swaps whole groups (eval/paired.py)."""
    records = []
    for split, table in tables.items():
        table = np.asarray(table, dtype=np.float64).reshape(-1, 4)
        parts = ratio_parts(table)
        text = (texts or {}).get(split)
        for row in range(len(table)):
            scores = {}
            for name, (num, den, transform) in parts.items():
                if math.isfinite(num[row]) and den[row] > 0:
                    score = {"num": float(num[row]), "den": float(den[row])}
                    scores[f"val/{split}/{name}"] = {**score, "transform": transform} if transform else score
            records.append(
                {
                    "id": f"{split}/{int(table[row, ITEM])}",
                    "split": split,
                    "tokens": int(table[row, TOKENS]),
                    "bytes": int(table[row, BYTES]),
                    **_marks(text, int(table[row, ITEM])),
                    **_group(groups, split, int(table[row, ITEM])),
                    "scores": scores,
                }
            )
    return records


def _group(groups: dict[str, list[str]] | None, split: str, item: int) -> dict:
    of_split = (groups or {}).get(split) or []
    return {"group": of_split[item]} if item < len(of_split) else {}


def write_validation_items(
    out: Path,
    tables: dict[str, np.ndarray],
    texts: dict[str, dict] | None = None,
    groups: dict[str, list[str]] | None = None,
) -> Path | None:
    """`train.val_items.jsonl` in the run folder, written whole or not at all; None where the module
    kept no items (a stage whose validation is not per item)."""
    if not tables:
        return None
    return write_items(out, VALIDATION_TASK, validation_records(tables, texts, groups))
