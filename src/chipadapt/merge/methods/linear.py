"""Linear interpolation of weights (model soup): lam * chip + (1 - lam) * instruct."""

from chipadapt.merge.methods.base import MergeMethod, TensorMerge, working


class Linear(MergeMethod):
    def __call__(self, name, chip, instruct, base, lam, stats):
        return TensorMerge(lam * working(chip) + (1 - lam) * working(instruct))
