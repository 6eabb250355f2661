"""The start-over of resume=false (or of overwrite=true over a finished training): the checkpoint callback's own
files discarded as the curves start over, and a start-over a kill cut short finished by the rerun."""

import logging
import os
import re
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io import folder_swap
from chipadapt.io.atomic import write_json_atomic
from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY
from chipadapt.stages.published_record import PUBLISHED_RECORD
from chipadapt.stages.resume_settings import checkpoint_metadata
from chipadapt.stages.slurm_start_over import STARTED_OVER_BY

log = logging.getLogger(__name__)

# Written first and removed last by a start-over (discard_checkpoint): a rerun that finds it finishes the
# start-over the kill cut short, rather than resuming what is left of the earlier run.
START_OVER_MARKER = ".start_over"
# Lightning's name of a step checkpoint when the callback's `filename` is not set.
DEFAULT_CHECKPOINT_NAME = "{epoch}-{step}"


def start_over_pending(out: Path) -> bool:
    """Whether a start-over in `out` was cut off before it finished discarding the earlier run's checkpoints."""
    return (out / "checkpoints" / START_OVER_MARKER).exists()


def step_checkpoint_name(filename: str | None, metric_names: bool = True) -> re.Pattern:
    """The names the checkpoint callback gives step checkpoints for its `filename` (Lightning's
    `{epoch}-{step}` where unset): each `{metric}` becomes `metric=VALUE` (`metric_names`: the callback's
    auto_insert_metric_name) or its value, with `.ckpt` and a `-vN` version after it."""
    parts = re.split(r"(\{[^{}]*\})", filename or DEFAULT_CHECKPOINT_NAME)
    pattern = ""
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            name = re.escape(part[1:-1].split(":")[0].strip())
            pattern += f"{name}=[^/]+?" if metric_names else "[^/]+?"
        else:
            pattern += re.escape(part)
    return re.compile(f"{pattern}(?:-v\\d+)?\\.ckpt")


def holds_our_records(entry: Path) -> bool:
    """Whether a checkpoint holds what RecordSettings writes into every checkpoint of this tool (its metadata
    read without its tensors); a file that is no checkpoint, or a folder without metadata, does not."""
    try:
        content = checkpoint_metadata(entry)
    except ChipadaptError:
        return False
    return isinstance(content, dict) and CHECKPOINT_KEY in content


def discard_checkpoint(out: Path, filename: str | None = None, metric_names: bool = True) -> None:
    """resume=false: the folder's checkpoints go at the moment its curves start over (metrics.csv is
    cut to the new run's rows, TensorBoard's purge_step hides the old events), not when the new run's
    first checkpoint replaces them. Kept until then, a start-over killed before that checkpoint left
    the old run's checkpoint beside the new run's first rows, and the next rerun resumed it and
    logged on below them: one curve of two runs, the old run's early steps lost all the same. The
    user asked to start over; keeping the checkpoint and not its curves helps nobody. The earlier run's
    step checkpoints go too, not only `last.ckpt`: those of save_top_k=-1 that the new run does not reach
    (a shorter run) were otherwise left under the new run's name, and export.py run=RUN step=N exported the
    old run's weights as the new run's. Only what the checkpoint callback writes goes: `last.ckpt` and the
    names of its `filename` (`filename`, `metric_names`) that hold this tool's records; anything else in the folder (a
    checkpoint copied there by hand, another tool's) is the user's, kept and named. Each is renamed aside
    first (one atomic step; a folder checkpoint's removal takes long), then removed, with what an earlier
    replacement or discard left (hidden names, ours). START_OVER_MARKER is written before the first rename
    and removed after the last: a kill in between leaves it, and the rerun finishes the start-over."""
    folder = out / "checkpoints"
    if not folder.is_dir():
        return
    marker = folder / START_OVER_MARKER
    write_json_atomic(marker, {"started_over": True})
    ckpt = folder / "last.ckpt"
    names = step_checkpoint_name(filename, metric_names)
    ours, kept = [], []
    for entry in sorted(folder.glob("*.ckpt")):
        if entry == ckpt:
            continue
        (ours if names.fullmatch(entry.name) and holds_our_records(entry) else kept).append(entry)
    for entry in [ckpt, *ours]:
        aside = folder / f".{entry.name}.discarded"
        if entry.exists() or entry.is_symlink():
            folder_swap.discard(aside)
            os.replace(entry, aside)
            if entry == ckpt:
                log.warning("%s, not resumed, is discarded; the run and its curves start over", ckpt)
        for leftover in (aside, folder_swap.partial_path(entry), folder_swap.old_path(entry)):
            folder_swap.discard(leftover)
    if ours:
        log.warning(
            "%d step checkpoint%s of the earlier run in %s discarded as well (%s)",
            len(ours),
            "" if len(ours) == 1 else "s",
            folder,
            ", ".join(entry.name for entry in ours),
        )
    for leftover in folder.glob(".*.ckpt.discarded"):  # what a start-over cut off renamed aside
        folder_swap.discard(leftover)
    if kept:
        log.warning(
            "kept in %s, not the checkpoint callback's (another name, or no chipadapt records): %s",
            folder,
            ", ".join(entry.name for entry in kept),
        )
    # What model/ was published from is the earlier run's: kept, it matched the new training's checkpoint at
    # the same step and settings (an overwrite=true retrain), which a requeue then took as published and
    # started over again, each preemption losing the whole training. Without it, model/'s time decides.
    (out / PUBLISHED_RECORD).unlink(missing_ok=True)
    # Which SLURM job started the folder over is the earlier start-over's: kept, a later requeue of that job took
    # this start-over's checkpoint (a resume=false run by hand, say) for its own. record_start_over_job writes
    # this one's, within SLURM.
    (folder / STARTED_OVER_BY).unlink(missing_ok=True)
    marker.unlink()
