"""A done step whose records were restored without its model (restore.py) is rebuilt when a step that
runs needs the model, and checked against the model's recorded fingerprint."""

import datetime as dt
import logging
import os
import re
import shutil
from pathlib import Path

from rich.progress import Progress

from chipadapt.errors import ChipadaptError
from chipadapt.io import folder_swap
from chipadapt.reproduce.fingerprint import (
    FINGERPRINT,
    LOSS_TOLERANCE,
    ROUNDING_DRIFT,
    deviation,
    fingerprint,
    loss_difference,
    read_fingerprint,
    weight_files,
)
from chipadapt.reproduce.ledger import Ledger
from chipadapt.reproduce.step_process import execute, move_aside
from chipadapt.reproduce.steps import Step

log = logging.getLogger(__name__)
# A rebuilt model this close to the recorded one (relative to each tensor's RMS) is the same model for
# every measure here: the chip model sits about 1e-2 from the instruct model on the same scale.
REBUILD_TOLERANCE = 1e-4


def packed(step: Step, out: Path) -> bool:
    """Its records came without its model (restore.py): the fingerprint is there, the weights are not."""
    folder = step.folder(out)
    return not step.multirun and (folder / FINGERPRINT).is_file() and not weight_files(folder / "model")


def named_folders(command: list[str], out: Path) -> set[tuple[str, Path]]:
    """(step folder name, path) of every path under `out` that the command's arguments name."""
    pattern = re.compile(re.escape(str(out)) + r"/([^/\s,\]}'\"]+)(?:/[^\s,\]}'\"]*)?")
    return {(m.group(1), Path(m.group(0))) for arg in command for m in pattern.finditer(arg)}


def with_rebuilds(
    actions: list[tuple[Step, str]], commands: dict[str, list[str]], ledger: Ledger, out: Path
) -> list[tuple[Step, str]]:
    """A done step whose model is missing (its records restored without it) is rebuilt when a command
    that runs names the model, and so on up the chain: the SFT model's rebuild names the DAPT model.
    Anything else a done step's records lack is an error here, before hours of steps."""
    result, by_name = [], {step.name: (step, action) for step, action in actions}
    for step, action in reversed(actions):
        if action in ("skip", "ignore") and step.name in commands:  # named by a later step: rebuild
            action = "rebuild"
            commands[step.name] = ledger.recorded_command(step.name)
        if action in ("run", "rerun", "resume", "rebuild"):
            for name, path in named_folders(commands[step.name], out):
                other = by_name.get(name)
                if other is None or other[1] not in ("skip", "ignore") or name == step.name or path.exists():
                    continue
                record = ledger.records.get(name) or {}
                if record.get("status") != "completed":
                    continue  # never ran here: the step that reads it says so when it runs
                model = other[0].folder(out) / "model"
                if path.is_relative_to(model) and packed(other[0], out):
                    commands.setdefault(name, [])
                    continue
                raise ChipadaptError(
                    f"reproduce: step {step.name} reads {path}, which step {name}'s records do not hold "
                    f"(restored from another machine without it); run it again with force=[{name}]"
                )
        result.append((step, action))
    return result[::-1]


def put_in_place(built: Path, model: Path) -> None:
    """The rebuilt model's files into the step's model folder. Records restored there (the tokenizer
    step writes its report beside its weights) stay as they are: the later steps were measured with them.
    The folder is assembled beside the old one and swapped in whole (io/folder_swap.py): a kill midway
    never leaves weights without the files that go with them, which later steps would take as done."""
    folder_swap.recover(model)  # a swap cut between its renames: the restored records back first
    if not model.exists():
        os.replace(built, model)
        return
    for entry in model.iterdir():  # the restored records win over the rebuild's own copies
        target = built / entry.name
        folder_swap.discard(target)
        if entry.is_dir():
            shutil.copytree(entry, target)
        else:
            shutil.copy2(entry, target)
    folder_swap.discard(folder_swap.partial_path(model))  # left by a kill between the two steps here
    os.replace(built, folder_swap.partial_path(model))
    folder_swap.swap_in(model)


def rebuild_step(step: Step, steps: list[Step], out: Path, ledger: Ledger, progress: Progress, task) -> None:
    """Retrain the model of a done step whose records came from elsewhere (restore.py), with its recorded
    command, in `.rebuild/<step>/` (an interrupted rebuild resumes there); then put the model in place
    and compare it with the fingerprint the later steps were measured with. Within REBUILD_TOLERANCE,
    or within ROUNDING_DRIFT with the recorded training losses at every step, they stay done. Otherwise
    the rebuilt run becomes the step's folder and every step that read its model is marked outdated:
    the next invocation runs them again."""
    folder = step.folder(out)
    scratch = out / ".rebuild" / step.name
    command = [
        f"hydra.run.dir={scratch}" if a.startswith("hydra.run.dir=") else a for a in ledger.recorded_command(step.name)
    ]
    log_path = out / "logs" / f"{step.name}.rebuild.log"
    returncode, seconds = execute(step.script, command, log_path, progress, task)
    if returncode != 0 or not weight_files(scratch / "model"):
        raise ChipadaptError(
            f"reproduce: rebuilding the model of {step.name} failed (exit {returncode}); log: {log_path}. "
            "Rerun the same command to resume the rebuild"
        )
    try:
        recorded = read_fingerprint(folder / FINGERPRINT)
    except ValueError:
        raise ChipadaptError(f"reproduce: {folder / FINGERPRINT}: not a model fingerprint") from None
    off = deviation(recorded, fingerprint(scratch / "model"))
    record = ledger.records[step.name]
    now = dt.datetime.now().isoformat(timespec="seconds")
    record["rebuilt"] = {"finished": now, "seconds": round(seconds, 1), "deviation": off, "log": str(log_path)}
    rounding = REBUILD_TOLERANCE < off <= ROUNDING_DRIFT  # kept only if the training losses say so
    losses_off = loss_difference(folder / "metrics.csv", scratch / "metrics.csv") if rounding else None
    if off <= REBUILD_TOLERANCE or (losses_off is not None and losses_off <= LOSS_TOLERANCE):
        put_in_place(scratch / "model", folder / "model")
        (folder / FINGERPRINT).touch()  # still the record of what the later steps used: not rewritten
        if rounding:
            record["rebuilt"]["kept"] = f"every training loss within {losses_off:.1e} of the recorded one (run scale)"
        ledger.save()
        # The rebuild's resume checkpoints (weights and optimizer state, several times the model) served
        # only an interrupted rebuild; its logs and metrics stay in the hidden scratch folder as evidence.
        shutil.rmtree(scratch / "checkpoints", ignore_errors=True)
        how = "identical to" if off == 0 else f"within {off:.1e} of"
        why = " (every training loss matches: float rounding)" if rounding else ""
        log.info("%s: model rebuilt in %.0f s, %s the recorded one%s", step.name, seconds, how, why)
        return
    moved = move_aside(folder, out)
    shutil.move(str(scratch), str(folder))
    record["finished"] = now
    model = str(folder / "model")
    readers = [
        s.name
        for s in steps
        if s.name in ledger.records
        and s.name != step.name
        and (step.name in s.needs or any(model in a for a in ledger.recorded_command(s.name) or []))
    ]
    for name in readers:
        ledger.records[name]["status"] = "outdated"
    ledger.save()
    losses = (
        ""
        if not rounding
        else "; its training losses are not comparable with the recorded ones"
        if losses_off is None
        else f"; its training losses differ by up to {losses_off:.1e} (tolerance {LOSS_TOLERANCE:.0e})"
    )
    raise ChipadaptError(
        f"reproduce: the rebuilt model of {step.name} differs from the recorded one by {off:.2e} (relative; "
        f"tolerance {REBUILD_TOLERANCE:.0e}{losses}): {', '.join(readers) or 'no step'} measured the old one and "
        f"will run again. Rerun the same command (the old records are in {moved})"
    )
