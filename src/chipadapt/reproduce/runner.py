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
import signal
import threading
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chipadapt.errors import ChipadaptError
from chipadapt.report import console
from chipadapt.reproduce.choices import Choice, NotReady, choose
from chipadapt.reproduce.ledger import Ledger, now_versions
from chipadapt.reproduce.rebuild import rebuild_step, with_rebuilds
from chipadapt.reproduce.step_process import execute, failure, move_aside
from chipadapt.reproduce.steps import Step

log = logging.getLogger(__name__)


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
        if ledger.done(step.name, command, step.code_scope) and step.name not in force and not upstream:
            actions.append((step, "skip"))
            continue
        recorded = ledger.recorded_command(step.name)
        # Same command but other code versions (a new GGUF conversion): not resumed, its folder moved aside.
        same = (
            recorded == command
            and step.name not in force
            and not upstream
            and not ledger.other_code(step.name, step.code_scope)
        )
        actions.append(
            (step, "resume" if same and step.folder(out).exists() else "rerun" if step.folder(out).exists() else "run")
        )
        commands[step.name] = command or step.command(out)
        running.add(step.name)
    return with_rebuilds(actions, commands, ledger, out)


def run_step(step: Step, choice: Choice | None, out: Path, ledger: Ledger, progress: Progress, task) -> None:
    command = step.command(out, choice.overrides if choice else ())
    log_path = out / "logs" / f"{step.name}.log"
    ledger.start(step.name, command, log_path, choice, step.code_scope)
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


def rerun_reason(step: Step, ledger: Ledger, command: list[str], force: set[str]) -> str:
    """Why a step that has a folder runs again, for the log: the first of plan's reasons that holds."""
    if step.name in force:
        return "force names it"
    code = ledger.other_code(step.name, step.code_scope)
    if code:
        return f"recorded with {code}, now {now_versions()}"
    if ledger.recorded_command(step.name) != command:
        return "its settings changed"
    if (ledger.records.get(step.name) or {}).get("status") == "outdated":
        return "the model it read was rebuilt differently"
    return "a step it needs ran again"


class Terminated(ChipadaptError):
    """SIGTERM (a scheduler's kill, `timeout`): stop the running step too, and record it as interrupted."""


def _on_sigterm(signum, frame):
    # What the README promises, where the user reads it: a rerun loses nothing of what was done.
    raise Terminated(
        f"reproduce: terminated by signal {signum}; rerun the same command: it skips the steps done "
        "and resumes the interrupted one (a training step from its last checkpoint)"
    )


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
                why = rerun_reason(step, ledger, step.command(out, choice.overrides if choice else ()), force)
                moved = move_aside(step.folder(out), out)
                log.info("%s: %s; previous folder moved to %s", step.name, why, moved)
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
