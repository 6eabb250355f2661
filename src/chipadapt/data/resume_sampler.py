"""The one sampler behind every training DataModule: a resumed run continues the data stream
exactly where its checkpoint left off, in every stage and every epoch.

Each epoch's order is fixed by the seed and the epoch number (or is the stream's own order, for
DAPT, whose blend is shuffled once when built), and is cut to whole global batches, so every
optimizer step sees a full global batch and a step count says exactly which examples were seen.
A run resumed at step s skips the first s - (epoch's first step) global batches of its epoch and no
more. Under DDP each global batch is split between the processes, so N processes train on exactly
the batches one process with accumulation would. Being a DistributedSampler, Lightning leaves it in
place instead of wrapping it in one that would reorder the stream, and calls `set_epoch` on it.
"""

import logging

import torch
from torch.utils.data import DataLoader, DistributedSampler

log = logging.getLogger(__name__)


class ResumeSampler(DistributedSampler):
    def __init__(
        self,
        length: int,
        rank: int = 0,
        world: int = 1,
        global_batch: int | None = None,
        shuffle_seed: int | None = None,
        position=None,
        with_epoch: bool = False,
    ):
        """`position()` gives (global step, epoch) when iteration starts: Lightning may build the
        loader before it restores a checkpoint (a scheduler asking for the number of steps does),
        so where to resume is read at the first epoch's start, not here."""
        # DistributedSampler.__init__ needs a process group; nothing of it is used here.
        self.rank, self.num_replicas, self.global_batch = rank, world, global_batch or world
        # Whole global batches only; a set smaller than one global batch is one (smaller) step.
        self.length = length - length % self.global_batch if length >= self.global_batch else length
        self.position = position or (lambda: (0, 0))
        self.shuffle_seed, self.shuffle, self.epoch = shuffle_seed, shuffle_seed is not None, 0
        self.start = self.start_epoch = None
        # with_epoch: yield (index, epoch) so a dataset whose items change per epoch (the retriever's
        # rotating negatives) reads the epoch from the stream itself, also in worker processes and in
        # a run resumed at an epoch boundary, where Lightning calls no epoch-start hook before it.
        self.with_epoch = with_epoch

    def _resume_point(self) -> None:
        step, epoch = self.position()
        steps_per_epoch = max(1, self.length // self.global_batch)
        # Within the epoch the run stopped in: the global batches already trained on.
        self.start = min(self.length, max(0, (step - epoch * steps_per_epoch) * self.global_batch))
        self.start_epoch = epoch
        if self.start:
            log.info("resuming the data stream after %d sequences", self.start)

    def _order(self) -> list[int]:
        if self.shuffle_seed is None:
            return list(range(self.length))
        generator = torch.Generator().manual_seed(self.shuffle_seed * 1_000_003 + self.epoch)
        return torch.randperm(self.length, generator=generator).tolist()

    def _positions(self, begin: int):
        share = self.global_batch // self.num_replicas
        for block in range(begin, self.length, self.global_batch):
            yield from range(block + self.rank * share, min(block + (self.rank + 1) * share, self.length))

    def __iter__(self):
        if self.start is None:
            self._resume_point()
        order = self._order()
        begin = self.start if self.epoch == self.start_epoch else 0
        if self.with_epoch:
            return ((order[i], self.epoch) for i in self._positions(begin))
        return (order[i] for i in self._positions(begin))

    def __len__(self) -> int:
        """A whole epoch's share of this process, also in a resumed epoch: Lightning counts the
        batches already done in it (restored from the checkpoint) toward the same total."""
        return sum(1 for _ in self._positions(0))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def resumable_loader(
    dataset,
    trainer,
    micro_batch_size: int,
    collate_fn,
    num_workers: int = 0,
    shuffle_seed: int | None = None,
    with_epoch: bool = False,
) -> DataLoader:
    """A training DataLoader that continues from the trainer's global step (from 0 outside one).
    `with_epoch`: the dataset is indexed by (index, epoch) pairs."""
    rank, world, accumulation, position = 0, 1, 1, None
    if trainer is not None:
        rank, world, accumulation = trainer.global_rank, trainer.world_size, trainer.accumulate_grad_batches
        position = lambda: (trainer.global_step, trainer.current_epoch)  # noqa: E731
    sampler = ResumeSampler(
        len(dataset), rank, world, accumulation * micro_batch_size * world, shuffle_seed, position, with_epoch
    )
    # A generator of its own: otherwise each new iterator draws its worker seed from the global
    # generator, and a resumed run (which creates iterators at other moments) would shift it.
    return DataLoader(
        dataset,
        batch_size=micro_batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(shuffle_seed or 0),
    )
