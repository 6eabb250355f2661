"""Run the steps that are not done, in order, each as its own process with its log in `logs/`.

Done (same command, completed) steps are skipped. A step runs again when its command changed, when
`force` names it, or when a step it needs ran again in this invocation; its old folder is then moved
to `.stale/` first (nothing is deleted, and a Lightning checkpoint of other settings is not resumed).
A failed or interrupted step keeps its folder: train.py resumes from its last checkpoint on the rerun.
"""

import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chipadapt.errors import ChipadaptError
from chipadapt.report import console
from chipadapt.reproduce.choices import Choice, NotReady, choose
from chipadapt.reproduce.ledger import Ledger
from chipadapt.reproduce.steps import Step

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]  # the repository: train.py, evaluate.py, merge.py


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
    """(step, action) in order; action is run, rerun (moved aside first), resume, skip or ignore.
    A step whose `choose` waits on candidates that run in this invocation counts as changed, and so
    does one whose needed steps finished after it started."""
    unknown = (only | force) - {s.name for s in steps}
    if unknown:
        raise ChipadaptError(
            f"only/force: no step named {sorted(unknown)[0]!r} in this variant "
            f"(steps: {', '.join(s.name for s in steps)})"
        )
    actions, running = [], set()
    for step in steps:
        if only and step.name not in only:
            actions.append((step, "ignore"))
            continue
        command = resolved_command(step, steps, out, completed(ledger) - running)
        upstream = command is None or any(n in running for n in step.needs) or ran_again_since(step, ledger)
        if ledger.done(step.name, command) and step.name not in force and not upstream:
            actions.append((step, "skip"))
            continue
        recorded = ledger.recorded_command(step.name)
        same = recorded == command and step.name not in force and not upstream
        actions.append(
            (step, "resume" if same and step.folder(out).exists() else "rerun" if step.folder(out).exists() else "run")
        )
        running.add(step.name)
    return actions


def run_step(step: Step, choice: Choice | None, out: Path, ledger: Ledger, progress: Progress, task) -> None:
    command = step.command(out, choice.overrides if choice else ())
    log_path = out / "logs" / f"{step.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    ledger.start(step.name, command, log_path, choice)
    start = time.perf_counter()
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write(f"\n# {dt.datetime.now().isoformat(timespec='seconds')} {' '.join(command)}\n")
        handle.flush()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / step.script), *command[1:]],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        try:
            while proc.poll() is None:
                progress.update(task, description=f"{step.name}: {last_line(log_path)}")
                time.sleep(1.0)
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            ledger.finish(step.name, "interrupted", time.perf_counter() - start, proc.returncode)
            raise
    seconds = time.perf_counter() - start
    status = "completed" if proc.returncode == 0 else "failed"
    ledger.finish(step.name, status, seconds, proc.returncode)
    if status == "failed":
        tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        console.print(tail, markup=False, highlight=False)
        raise ChipadaptError(
            f"reproduce: step {step.name} failed (exit {proc.returncode}); log: {log_path}. "
            "Rerun the same command to resume from it"
        )


class Terminated(ChipadaptError):
    """SIGTERM (a scheduler's kill, `timeout`): stop the running step too, and record it as interrupted."""


def _on_sigterm(signum, frame):
    raise Terminated(f"reproduce: terminated by signal {signum}")


def run_steps(steps: list[Step], out: Path, only: set[str], force: set[str]) -> Ledger:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out / "steps.json")
    actions = plan(steps, ledger, out, only, force)
    todo = [(s, a) for s, a in actions if a in ("run", "rerun", "resume")]
    skipped = [s.name for s, a in actions if a == "skip"]
    if skipped:
        console.print(f"[dim]done already, skipped: {', '.join(skipped)}[/dim]")
    with Progress(
        TextColumn("[bold]{task.fields[step]}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    ) as progress:
        overall = progress.add_task("", total=len(todo), step="reproduce")
        for i, (step, action) in enumerate(todo, start=1):
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
