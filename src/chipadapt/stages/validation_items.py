"""A training run's final validation as per-item records (eval/items.py's format), written to its run
folder as `train.val_items.jsonl` once the run is done: what compare.py pairs two training runs on
(two trials of a search validate the same held-out documents), as it pairs two evaluations.

One record per held-out item (a document for DAPT, a conversation for SFT) and split, from the item
sums the causal LM keeps (modules/val_items.py): id `<split>/<item>` (the item's place in the split's
validation set, the same in every run that read the same text: compare.py checks that first, by the
runs' recorded validation fingerprints), its `split`, `tokens` and `bytes` (what eval/same_items.py
checks an item by), and its scores named as the run's metrics (`val/domain/bpb`), each the ratio whose
sums over items give the logged figure."""

import math
from pathlib import Path

import numpy as np

from chipadapt.eval.items import VALIDATION_TASK, write_items
from chipadapt.modules.val_figures import ratio_parts
from chipadapt.modules.val_items import BYTES, ITEM, TOKENS


def validation_records(tables: dict[str, np.ndarray]) -> list[dict]:
    """{split: item table} -> one record per (split, item). A non-finite sum (diverged weights) is left
    unscored: no paired test reads it, and strict JSON cannot hold it."""
    records = []
    for split, table in tables.items():
        table = np.asarray(table, dtype=np.float64).reshape(-1, 4)
        parts = ratio_parts(table)
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
                    "scores": scores,
                }
            )
    return records


def write_validation_items(out: Path, tables: dict[str, np.ndarray]) -> Path | None:
    """`train.val_items.jsonl` in the run folder, written whole or not at all; None where the module
    kept no items (a stage whose validation is not per item)."""
    if not tables:
        return None
    return write_items(out, VALIDATION_TASK, validation_records(tables))
