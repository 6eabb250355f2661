"""A resume that validates on other held-out text than the run it resumes (another data.val_max_bytes,
val_sources, limit_val_batches): how it is told, in the training log and by compare.py, which reads it
from the run manifest's `data.validation_changes` (written by stages/common.py StartingMetrics).

Its val/ curve then goes on on other text from the resumed step, with nothing in the curve to show it:
a falling curve that steps up there looks like a regression. So does
a resume across a change of the rule it is scored by (scoring_rules.py).
"""

from chipadapt.scoring_rules import BYTE_COUNT, FIRST_TOKEN

# The settings that change how validation scores its text (scoring_rules.py), not which text it reads.
RULES = (FIRST_TOKEN, BYTE_COUNT)


def validation_change_message(change: dict) -> str:
    """One resume's change ({"step": N, "changed": {key: [before, after]}}) in one sentence, naming what
    changed: the text (a data or trainer setting), the rule it is scored by (a version's), or both."""
    settings = "; ".join(f"{key}: {before!r} -> {after!r}" for key, (before, after) in change["changed"].items())
    rule = [key in RULES for key in change["changed"]]
    what, how = (
        ("scoring rule", "scored by other rules")
        if all(rule)
        else ("text and its scoring rule", "read on other texts by other rules")
        if any(rule)
        else ("text", "read on other texts")
    )
    step = change["step"]
    return (
        f"the validation {what} changed at the resumed step {step} ({settings}): the val/ figures logged before "
        f"this resume (steps up to {step}) and those logged after it were {how} and are not comparable"
    )
