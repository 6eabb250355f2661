"""Batches of (query, passages) groups, tokenised by the encoder's own tokenizer and prefixes."""

from chipadapt.data.base import TrainingDataModule
from chipadapt.retrieval.encoder import TextEncoder
from chipadapt.retrieval.tevatron_data import GroupDataset
from chipadapt.retrieval.training_data import group_order


class RetrieverDataModule(TrainingDataModule):
    def __init__(
        self,
        train_groups: list[dict],
        val_groups: list[dict],
        encoder: TextEncoder,
        n_passages: int,
        batch_size: int,
        seed: int,
        positive: str,
    ):
        # Whole batches only (a last batch of a few queries has too few in-batch negatives to be a
        # fair step), in a seeded order per epoch; items by (index, epoch): the negatives rotate.
        super().__init__(batch_size, 0, seed, with_epoch=True)
        self.encoder = encoder
        self.train_set = GroupDataset(train_groups, n_passages, seed, positive)
        if val_groups:
            self.val_sets = {"synthetic_heldout": GroupDataset(val_groups, n_passages, seed + 1, "first")}
        self.stats = {
            "train_sequences": len(train_groups),
            "val_groups": len(val_groups),
            # What a checkpoint records, to tell a resume on other groups (stages/checkpoint_records.py).
            "training_order": group_order(train_groups),
        }

    def collate(self, items: list[tuple[str, list[str]]]) -> dict:
        queries = [q for q, _ in items]
        passages = [p for _, group in items for p in group]
        return {
            "query": dict(self.encoder.tokenize(queries, is_query=True)),
            "passages": dict(self.encoder.tokenize(passages, is_query=False)),
        }
