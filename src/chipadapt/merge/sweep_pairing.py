"""The merge sweep report's chosen lambda against the runner-up, item by item.

Two jobs of one sweep evaluated the same prompts and documents, so each measure is compared on the
items both scored (eval/paired.py: McNemar for pass/fail, the exact permutation test over 16 items or
fewer, the paired bootstrap above), after the check compare.py makes that the records under each id
are the same items and were scored with the same limits (eval/same_items.py). A choice whose every
difference from the runner-up is within noise is said to be one: on 4 IFEval prompts, "chosen: lam=1"
was a pick among lambdas that the evidence could not tell apart.
"""

from dataclasses import dataclass
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import items_file, read_items
from chipadapt.eval.paired import PairedDifference, paired_difference
from chipadapt.eval.paired_compare import interval_text, task_settings
from chipadapt.eval.same_items import same_items, same_settings

NOT_PAIRED = "not paired"


@dataclass(frozen=True)
class Versus:
    """One measure of the chosen job against the runner-up: chosen minus runner-up, or why it is not paired."""

    metric: str  # `<task>.<metric>` as results.json names it (`ifeval.prompt_loose`)
    higher_is_better: bool
    d: PairedDifference | None
    reason: str = ""

    @property
    def outcome(self) -> str:
        """better / worse (the interval leaves 0 out), within noise, or not paired."""
        if self.d is None:
            return NOT_PAIRED
        if self.d.verdict == "within noise":
            return "within noise"
        return "better" if (self.d.verdict == "higher") == self.higher_is_better else "worse"

    def text(self) -> str:
        if self.d is None:
            return f"{self.metric} {NOT_PAIRED} ({self.reason})"
        return (
            f"{self.metric} {interval_text(self.d.diff, *self.d.ci)} (n={self.d.n}, {self.d.test}, p={self.d.p:.3g}: "
            f"{self.outcome})"
        )

    def as_dict(self) -> dict:
        d = self.d
        return {
            "metric": self.metric,
            "outcome": self.outcome,
            "difference": None if d is None else d.diff,
            "ci95": None if d is None else list(d.ci),
            "p": None if d is None else d.p,
            "n": None if d is None else d.n,
            "test": None if d is None else d.test,
            "reason": self.reason,
        }


def versus(chosen: Path, runner_up: Path, metric: str, higher_is_better: bool) -> Versus:
    """`metric` of the job in folder `chosen` minus the one in `runner_up`, on the same items."""
    task, _, name = metric.partition(".")
    a_file, b_file = items_file(runner_up, task), items_file(chosen, task)
    missing = [f.parent.name for f in (b_file, a_file) if not f.is_file()]
    if missing:
        return Versus(metric, higher_is_better, None, f"job {', '.join(missing)} wrote no {b_file.name}")
    labels = (f"job {runner_up.name}", f"job {chosen.name}")
    try:
        same_settings(task, *labels, task_settings(runner_up, task), task_settings(chosen, task))
        a = read_items(a_file)
        b, _ = same_items(task, *labels, a, read_items(b_file))
        d = paired_difference(a, b, name)
    except (ChipadaptError, ValueError) as err:
        return Versus(metric, higher_is_better, None, str(err).removeprefix(f"{task}: "))
    if d is None:
        return Versus(metric, higher_is_better, None, f"no item scores {name} in both jobs")
    return Versus(metric, higher_is_better, d)
