"""Each step of a reproduction runs as its own process (train.py, evaluate.py, merge.py from the
repository), its output appended to its log; a step's old folder is moved to `.stale/`, never deleted."""

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.progress import Progress

from chipadapt.errors import ChipadaptError
from chipadapt.report import console

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
                try:  # a wait, not a sleep: the next step starts as soon as this one ends
                    proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    pass
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
