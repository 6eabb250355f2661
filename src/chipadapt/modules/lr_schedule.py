"""Learning-rate schedules of the `optim` group, and the warm-up a run's length leaves room for.

Warm-up follows NeMo's convention, not Hugging Face's: optimizer step i (from 0) of a w-step warm-up
runs at lr (i+1)/(w+1), so the first step trains. Hugging Face's `get_*_schedule_with_warmup` run it
at i/w, so their first step is at lr exactly 0: a 1-step run changes nothing, and a 3-step run with a
10-step warm-up never gets past a fifth of its lr.
"""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_that_fits(warmup: int, total_steps: int) -> int:
    """`warmup`, capped at half of `total_steps` (rounded down): a longer warm-up (adamw_cosine's 10
    steps in a 3-step run) spends most of the run, or all of it, below the lr it was given."""
    return min(warmup, total_steps // 2)


def cosine_with_warmup(optimizer: Optimizer, num_training_steps: int, num_warmup_steps: int) -> LambdaLR:
    """Linear warm-up over `num_warmup_steps` (the first step above 0), then cosine decay towards 0 at
    `num_training_steps`. Stepped once per optimizer step (Lightning's `interval: step`)."""

    def factor(step: int) -> float:
        if step < num_warmup_steps:
            return (step + 1) / (num_warmup_steps + 1)
        progress = (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)
