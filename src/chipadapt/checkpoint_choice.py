"""Which checkpoint export.py reads: `checkpoint=`, or a run's last.ckpt or a step's (`run=`, `step=`), and
among several files of one step the one written by the run."""

import logging
import re
from pathlib import Path

from omegaconf import DictConfig

from chipadapt.checkpoint_ownership import check_written_by_run, run_record
from chipadapt.errors import ChipadaptError

log = logging.getLogger(__name__)

# Lightning's default checkpoint names: `epoch=0-step=4.ckpt` (save_top_k=-1 keeps one per save).
STEP_IN_NAME = re.compile(r"(?:^|[-_])step=(\d+)(?:[-_.]|$)")


def find_checkpoint(cfg: DictConfig) -> tuple[Path, Path]:
    """(run folder, checkpoint) from `checkpoint=`, `run=` and `step=`."""
    step = cfg.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ChipadaptError(f"step: {step!r} is not a whole number >= 0")
    run = Path(str(cfg.run)).expanduser() if cfg.get("run") else None
    if cfg.get("checkpoint"):
        if step is not None:
            raise ChipadaptError("step: give step= with run=RUN, or checkpoint=FILE alone (not both)")
        ckpt = Path(str(cfg.checkpoint)).expanduser()
        if not ckpt.exists():
            raise ChipadaptError(f"checkpoint: {ckpt} does not exist")
        if run is None and (ckpt / "checkpoints").is_dir() and (ckpt / "manifest.json").is_file():
            return ckpt, chosen_step(ckpt, None, "checkpoint")  # a run folder: its last.ckpt
        if run is None:
            if ckpt.parent.name != "checkpoints":
                raise ChipadaptError(
                    f"checkpoint: {ckpt} is not in a run's checkpoints/ folder; name its run too: run=RUN"
                )
            run = ckpt.parent.parent
        return run, ckpt
    if run is None:
        raise ChipadaptError(
            "checkpoint: required, not set (checkpoint=RUN/checkpoints/last.ckpt, or run=RUN [step=N])"
        )
    return run, chosen_step(run, step, "run")


def chosen_step(run: Path, step: int | None, key: str) -> Path:
    """The run's last.ckpt (step None), else the checkpoint of that optimizer step."""
    folder = run / "checkpoints"
    if not run.exists():
        raise ChipadaptError(f"{key}: {run} does not exist (name the run folder train.py wrote)")
    if not run.is_dir():
        raise ChipadaptError(f"{key}: {run} is a file, not a run folder (name the run folder train.py wrote)")
    if not folder.is_dir():
        raise ChipadaptError(f"{key}: {run} has no checkpoints/ folder (not a training run, or none saved yet)")
    last = folder / "last.ckpt"
    if step is None:
        if not last.exists():
            raise ChipadaptError(f"{key}: {folder} has no last.ckpt yet; step=N picks another checkpoint")
        return last
    from chipadapt.models.checkpoint_weights import checkpoint_metadata

    named: dict[int, list[Path]] = {}
    for entry in sorted(folder.glob("*.ckpt")):
        found = STEP_IN_NAME.search(entry.name)
        if found:
            named.setdefault(int(found.group(1)), []).append(entry)
    if step in named:
        return one_of_step(run, named[step], step, key)
    last_step = checkpoint_metadata(last, key)["global_step"] if last.exists() else None
    if last_step == step:
        return last
    kept = sorted({*named, *([last_step] if last_step is not None else [])})
    raise ChipadaptError(
        f"step: {folder} has no checkpoint of step {step} (it has steps {', '.join(map(str, kept)) or 'none'}); "
        "a run keeps a checkpoint per save with callbacks.checkpoint.save_top_k=-1"
    )


def one_of_step(run: Path, candidates: list[Path], step: int, key: str) -> Path:
    """The one checkpoint of `step` among files whose names claim it: where there are several (an earlier run's
    under another callbacks.checkpoint.filename, or from before settings were recorded, which a start-over
    keeps), the one whose recorded settings are the run's; the first by name was exported as the run's, which
    could be the earlier run's weights. Refused in one line, naming the files, where that is not one. Names of
    one file (a `best-step=2.ckpt` link to the step's checkpoint) are one candidate; one that cannot be read (a
    file cut short, a sharded folder without its meta.pt) is set aside, said in a line, rather than stopping the
    export of the one that is the run's."""
    candidates = distinct_files(candidates)
    if len(candidates) == 1:
        return candidates[0]
    from chipadapt.models.checkpoint_weights import checkpoint_metadata
    from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY

    record = run_record(run)
    matching = []
    for entry in candidates:
        try:
            content = checkpoint_metadata(entry, key)
        except (ChipadaptError, OSError) as err:
            log.warning("step: %s set aside, it cannot be read (%s)", entry, " ".join(str(err).split()))
            continue
        if not isinstance(content.get(CHECKPOINT_KEY), dict):
            continue  # no settings recorded: nothing tells whose it is
        try:
            check_written_by_run(run, entry, record, content)
        except ChipadaptError:
            continue
        matching.append(entry)
    if len(matching) == 1:
        return matching[0]
    why = (
        "none records the settings of this run"
        if not matching
        else f"{len(matching)} record this run's settings ({', '.join(entry.name for entry in matching)})"
    )
    raise ChipadaptError(
        f"step: {run / 'checkpoints'} holds {len(candidates)} checkpoints of step {step} "
        f"({', '.join(entry.name for entry in candidates)}) and {why}; name the one to export with checkpoint=FILE"
    )


def distinct_files(candidates: list[Path]) -> list[Path]:
    """`candidates` less the names of a file already in it (links, hard links): each file by its own name where
    a candidate is that (a link's target before the link), else by its first."""
    kept: list[Path] = []
    for entry in sorted(candidates, key=Path.is_symlink):  # stable: by name within each kind
        try:
            if any(entry.samefile(other) for other in kept):
                continue
        except OSError:  # a dangling link is its own candidate, set aside as unreadable
            pass
        kept.append(entry)
    return kept
