"""Run the steps that are not done, in order, each as its own process with its log in `logs/`.

Done (same command, completed) steps are skipped. A step runs again when its command changed, when
`force` names it, or when a step it needs ran again in this invocation; its old folder is then moved
to `.stale/` first (nothing is deleted, and a Lightning checkpoint of other settings is not resumed).
A failed or interrupted step keeps its folder: train.py resumes from its last checkpoint on the rerun.
A done step whose records were restored without its model (restore.py) is rebuilt when a step that
runs needs the model, and checked against the model's recorded fingerprint.
"""

import datetime as dt
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chipadapt.errors import ChipadaptError
from chipadapt.io import folder_swap
from chipadapt.report import console
from chipadapt.reproduce.choices import Choice, NotReady, choose
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
from chipadapt.reproduce.steps import Step

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]  # the repository: train.py, evaluate.py, merge.py
# A rebuilt model this close to the recorded one (relative to each tensor's RMS) is the same model for
# every measure here: the chip model sits about 1e-2 from the instruct model on the same scale.
REBUILD_TOLERANCE = 1e-4


def last_line(path: Path, width: int = 90) -> str:
    """The last non-empty line of a growing log, for the live status."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            lines = [
                row.strip()
                for row in handle.read().decode("utf-8", "replace").replace("\r", "\n").splitlines()
                if row.strip()
            ]
    except OSError:
        return ""
    return lines[-1][-width:] if lines else ""


def move_aside(folder: Path, out: Path) -> Path | None:
    if not folder.exists():
        return None
    target = out / ".stale" / f"{folder.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(target))
    return target


def completed(ledger: Ledger) -> set[str]:
    return {name for name, record in ledger.records.items() if record.get("status") == "completed"}


def chosen(step: Step, steps: list[Step], out: Path, done: set[str]) -> Choice | None:
    """The overrides `step.choose` picks from finished candidates; None for a step without `choose`.
    Raises NotReady while a candidate is not done."""
    if not step.choose:
        return None
    return choose(step.choose, out, done, {s.name: s.multirun for s in steps})


def resolved_command(step: Step, steps: list[Step], out: Path, done: set[str]) -> list[str] | None:
    """The step's command with its chosen overrides; None while its choice cannot be made yet."""
    try:
        choice = chosen(step, steps, out, done)
    except NotReady:
        return None
    return step.command(out, choice.overrides if choice else ())


def ran_again_since(step: Step, ledger: Ledger) -> bool:
    """A step it needs finished after it started (rerun by an earlier invocation, e.g. with `only` or
    `force`): what it built on has changed, so its own results are out of date."""
    started = (ledger.records.get(step.name) or {}).get("started")
    return bool(started) and any(
        ((ledger.records.get(n) or {}).get("finished") or "") > started for n in step.needs
    )  # ISO timestamps of one clock compare as strings


def plan(steps: list[Step], ledger: Ledger, out: Path, only: set[str], force: set[str]) -> list[tuple[Step, str]]:
    """(step, action) in order; action is run, rerun (moved aside first), resume, skip, ignore or
    rebuild (with_rebuilds). A step whose `choose` waits on candidates that run in this invocation
    counts as changed, and so does one whose needed steps finished after it started or that a rebuild
    marked outdated."""
    unknown = (only | force) - {s.name for s in steps}
    if unknown:
        raise ChipadaptError(
            f"only/force: no step named {sorted(unknown)[0]!r} in this variant "
            f"(steps: {', '.join(s.name for s in steps)})"
        )
    actions, running, commands = [], set(), {}
    for step in steps:
        if only and step.name not in only:
            actions.append((step, "ignore"))
            continue
        command = resolved_command(step, steps, out, completed(ledger) - running)
        record = ledger.records.get(step.name) or {}
        upstream = (
            command is None
            or any(n in running for n in step.needs)
            or ran_again_since(step, ledger)
            or record.get("status") == "outdated"  # built on a model that was rebuilt differently
        )
        if ledger.done(step.name, command) and step.name not in force and not upstream:
            actions.append((step, "skip"))
            continue
        recorded = ledger.recorded_command(step.name)
        # Same command but other code versions (a new GGUF conversion): not resumed, its folder moved aside.
        same = recorded == command and step.name not in force and not upstream and not ledger.other_code(step.name)
        actions.append(
            (step, "resume" if same and step.folder(out).exists() else "rerun" if step.folder(out).exists() else "run")
        )
        commands[step.name] = command or step.command(out)
        running.add(step.name)
    return with_rebuilds(actions, commands, ledger, out)


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


def execute(
    script: str, command: list[str], log_path: Path, progress: Progress, task, on_interrupt=None
) -> tuple[int, float]:
    """Run one script to its end, its output appended to `log_path`; (exit status, seconds). An interrupt
    stops the child too, calls on_interrupt(exit status, seconds) and propagates."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    start = time.perf_counter()
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write(f"\n# {dt.datetime.now().isoformat(timespec='seconds')} {' '.join(command)}\n")
        handle.flush()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / script), *command[1:]],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        try:
            while proc.poll() is None:
                progress.update(task, description=f"{command[0]}: {last_line(log_path)}")
                time.sleep(1.0)
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if on_interrupt:
                on_interrupt(proc.returncode, time.perf_counter() - start)
            raise
    return proc.returncode, time.perf_counter() - start


def failure(step_name: str, returncode: int, log_path: Path) -> ChipadaptError:
    tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
    console.print(tail, markup=False, highlight=False)
    return ChipadaptError(
        f"reproduce: step {step_name} failed (exit {returncode}); log: {log_path}. "
        "Rerun the same command to resume from it"
    )


def run_step(step: Step, choice: Choice | None, out: Path, ledger: Ledger, progress: Progress, task) -> None:
    command = step.command(out, choice.overrides if choice else ())
    log_path = out / "logs" / f"{step.name}.log"
    ledger.start(step.name, command, log_path, choice)
    returncode, seconds = execute(
        step.script,
        command,
        log_path,
        progress,
        task,
        on_interrupt=lambda code, spent: ledger.finish(step.name, "interrupted", spent, code),
    )
    status = "completed" if returncode == 0 else "failed"
    ledger.finish(step.name, status, seconds, returncode)
    if status == "failed":
        raise failure(step.name, returncode, log_path)


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


class Terminated(ChipadaptError):
    """SIGTERM (a scheduler's kill, `timeout`): stop the running step too, and record it as interrupted."""


def _on_sigterm(signum, frame):
    raise Terminated(f"reproduce: terminated by signal {signum}")


def stop_on_sigterm() -> None:
    """SIGTERM raises Terminated (where signals can be handled: the main thread)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def step_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.fields[step]}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    )


def run_steps(steps: list[Step], out: Path, only: set[str], force: set[str]) -> Ledger:
    stop_on_sigterm()
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out / "steps.json")
    actions = plan(steps, ledger, out, only, force)
    todo = [(s, a) for s, a in actions if a in ("run", "rerun", "resume", "rebuild")]
    skipped = [s.name for s, a in actions if a == "skip"]
    if skipped:
        console.print(f"[dim]done already, skipped: {', '.join(skipped)}[/dim]")
    with step_progress() as progress:
        overall = progress.add_task("", total=len(todo), step="reproduce")
        for i, (step, action) in enumerate(todo, start=1):
            if action == "rebuild":
                task = progress.add_task("", total=None, step=f"[{i}/{len(todo)}] {step.name} (model)")
                rebuild_step(step, steps, out, ledger, progress, task)
                progress.update(task, description="model rebuilt", total=1, completed=1)
                progress.advance(overall)
                continue
            try:  # before anything is moved: a choice that cannot be made stops here, folders untouched
                choice = chosen(step, steps, out, completed(ledger))
            except NotReady as waiting:
                raise ChipadaptError(f"reproduce: step {step.name} chooses among steps not done: {waiting}") from None
            if choice:
                log.info("%s: %s chose %s (%s)", step.name, choice.by, " ".join(choice.overrides), choice.winner)
            if action == "rerun":
                moved = move_aside(step.folder(out), out)
                log.info("%s: settings or inputs changed; previous folder moved to %s", step.name, moved)
            task = progress.add_task("", total=None, step=f"[{i}/{len(todo)}] {step.name}")
            start = time.perf_counter()
            run_step(step, choice, out, ledger, progress, task)
            progress.update(
                task,
                description=f"done in {dt.timedelta(seconds=round(time.perf_counter() - start))}",
                total=1,
                completed=1,
            )
            progress.advance(overall)
    return ledger
