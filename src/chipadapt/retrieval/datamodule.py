"""Batches of (query, passages) groups, tokenised by the encoder's own tokenizer and prefixes."""

import lightning as L
from torch.utils.data import DataLoader

from chipadapt.data.resume_sampler import resumable_loader
from chipadapt.retrieval.encoder import TextEncoder
from chipadapt.retrieval.tevatron_data import GroupDataset


class RetrieverDataModule(L.LightningDataModule):
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
        super().__init__()
        self.encoder, self.batch_size, self.seed = encoder, batch_size, seed
        self.train_set = GroupDataset(train_groups, n_passages, seed, positive)
        self.val_set = GroupDataset(val_groups, n_passages, seed + 1, "first") if val_groups else None

    def collate(self, items: list[tuple[str, list[str]]]) -> dict:
        queries = [q for q, _ in items]
        passages = [p for _, group in items for p in group]
        return {
            "query": dict(self.encoder.tokenize(queries, is_query=True)),
            "passages": dict(self.encoder.tokenize(passages, is_query=False)),
        }

    def train_dataloader(self) -> DataLoader:
        # Whole batches only (a last batch of a few queries has too few in-batch negatives to be a
        # fair step), in a seeded order per epoch that a resumed run continues exactly.
        return resumable_loader(self.train_set, self.trainer, self.batch_size, self.collate, shuffle_seed=self.seed)

    def val_dataloader(self):
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, collate_fn=self.collate)
