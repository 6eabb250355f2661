"""The base of every training DataModule: the training set through the resumable sampler (exact
resume in every stage), one loader per validation split, and the pad id. A subclass fills
`train_set`, `val_sets` and `stats` in `setup` and says how examples become a batch (`collate`)."""

from collections.abc import Sequence

import lightning as L
from torch.utils.data import DataLoader

from chipadapt.data.resume_sampler import resumable_loader


def pad_token_id(tokenizer, fallback_id: int | None = None) -> int:
    """The tokenizer's pad token; without one, `fallback_id` (the document separator in causal-LM
    data) or else its end-of-sequence token. Padded positions are masked, so any id works; one rule
    keeps every stage's batches alike."""
    for candidate in (tokenizer.pad_token_id, fallback_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    raise ValueError("the tokenizer has neither a pad nor an end-of-sequence token")


class TrainingDataModule(L.LightningDataModule):
    def __init__(
        self, micro_batch_size: int, num_workers: int, seed: int, shuffle: bool = True, with_epoch: bool = False
    ):
        """`shuffle`: a seeded order per epoch (False: the training set's own order, for data shuffled
        once when built); `with_epoch`: training items are indexed by (index, epoch)."""
        super().__init__()
        self.micro_batch_size, self.num_workers, self.seed = int(micro_batch_size), int(num_workers), seed
        self.shuffle, self.with_epoch = shuffle, with_epoch
        self.train_set: Sequence | None = None
        self.val_sets: dict[str, Sequence] = {}
        self.stats: dict = {}

    @property
    def val_split_names(self) -> list[str]:
        return list(self.val_sets)

    def collate(self, items: list) -> dict:
        raise NotImplementedError

    def val_collate(self, items: list) -> dict:
        return self.collate(items)

    def summary(self):
        """What the run trains on, printed before it starts (a rich renderable, or None)."""
        return None

    def train_dataloader(self) -> DataLoader:
        return resumable_loader(
            self.train_set,
            self.trainer,
            self.micro_batch_size,
            self.collate,
            self.num_workers,
            shuffle_seed=self.seed if self.shuffle else None,
            with_epoch=self.with_epoch,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(
                dataset,
                batch_size=self.micro_batch_size,
                shuffle=False,
                num_workers=self.num_workers,
                collate_fn=self.val_collate,
            )
            for dataset in self.val_sets.values()
        ]
