"""A resume that validates on other held-out text than the run it resumes (another data.val_max_bytes,
val_sources, limit_val_batches): how it is told, in the training log and by compare.py, which reads it
from the run manifest's `data.validation_changes` (written by stages/common.py StartingMetrics).

Its val/ curve then goes on on other text from the resumed step, with nothing in the curve to show it:
a falling curve that steps up there looks like a regression."""


def validation_change_message(change: dict) -> str:
    """One resume's change ({"step": N, "changed": {key: [before, after]}}) in one sentence."""
    settings = "; ".join(f"{key}: {before!r} -> {after!r}" for key, (before, after) in change["changed"].items())
    step = change["step"]
    return (
        f"the validation text changed at the resumed step {step} ({settings}): the val/ figures logged before "
        f"this resume (steps up to {step}) and those logged after it were read on other texts and are not comparable"
    )
