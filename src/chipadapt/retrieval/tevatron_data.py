"""Tevatron-format training groups: `{"query", "positive_passages": [{"docid", "text"}], "negative_passages": [...]}`.

Each step sees, per query, one positive and `n_passages - 1` negatives, chosen per epoch (items are
indexed by `(index, epoch)`, see data/resume_sampler.py; a plain index means epoch 0) the way
Tevatron's TrainDataset chooses them (positive rotating with the epoch, negatives a seeded shuffle
walked by epoch), so that every negative is used over the epochs. Tevatron's own dataset class needs
a Hugging Face Trainer's state and `datasets` tables; this one reads the same JSONL directly.
"""

import random
from pathlib import Path

from torch.utils.data import Dataset

from chipadapt.errors import ChipadaptError
from chipadapt.io.jsonl import jsonl_records


def read_tevatron(path: str | Path) -> list[dict]:
    path = Path(path)
    groups = []
    for lineno, record in jsonl_records(path, missing=f"training file {path} does not exist"):
        if not isinstance(record.get("query"), str):
            raise ChipadaptError(f"{path}:{lineno}: a training group needs a string 'query'")
        if not record["query"].strip():  # an empty query trains the encoder to match nothing to the positive
            raise ChipadaptError(f"{path}:{lineno}: 'query' is empty")
        for key in ("positive_passages", "negative_passages"):
            value = record.get(key, [] if key == "negative_passages" else None)
            if not isinstance(value, list) or not all(
                isinstance(p, dict) and isinstance(p.get("text"), str) for p in value
            ):
                raise ChipadaptError(f"{path}:{lineno}: {key!r} must be a list of {{'docid', 'text'}}")
        if not record["positive_passages"]:
            raise ChipadaptError(f"{path}:{lineno}: no positive passage")
        groups.append(record)
    if not groups:
        raise ChipadaptError(f"{path}: no training groups")
    return groups


class GroupDataset(Dataset):
    def __init__(self, groups: list[dict], n_passages: int, seed: int, positive: str = "first"):
        if n_passages < 1:
            raise ChipadaptError(f"retriever.train.n_passages={n_passages}: at least 1 (the positive)")
        if positive not in ("first", "rotate"):
            raise ChipadaptError(f"retriever.train.positive: {positive!r} is not one of first, rotate")
        self.groups, self.n_passages, self.seed, self.positive = groups, n_passages, seed, positive

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[str, list[str]]:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        group = self.groups[index]
        positives = group["positive_passages"]
        negatives = [p["text"] for p in group.get("negative_passages", [])]
        # first: the passage the query was written from (extra positives a judge found only stay out of
        # the negatives); rotate: Tevatron's default, a different positive each epoch.
        pick = 0 if self.positive == "first" else (index + epoch) % len(positives)
        passages = [positives[pick]["text"]]
        want = self.n_passages - 1
        if want and negatives:
            order = negatives[:]
            random.Random(self.seed * 1_000_003 + index).shuffle(order)
            offset = epoch * want % len(order)
            passages += (order * (want // len(order) + 2))[offset : offset + want]
        elif want:
            raise ChipadaptError(
                f"training group {group.get('query_id', index)} has no negatives but n_passages={self.n_passages}"
            )
        return group["query"], passages
