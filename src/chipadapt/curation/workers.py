"""Curation's worker processes: `WorkerPool(n, func).imap(units)` yields `func(unit)` in input order.

Not multiprocessing.Pool, which a stop signal wedged: SIGTERM or Ctrl-C to the process group (a SLURM
preemption, a terminal's Ctrl-C) killed its workers too, one of them while it held the lock of the
shared task queue, and the main process waited on that lock forever on its way out. Ignoring the
signals in Pool's workers only moves the hang: Pool.terminate() holds that lock while it ends its
workers with SIGTERM, which they would ignore. Here each worker has a pipe of its own, so no lock is
shared and a worker that dies blocks nothing. The workers ignore SIGINT and SIGTERM: the main process
decides (interrupts.py turns the signal into `Interrupted`) and, leaving the pool on any exception,
kills them with SIGKILL; what they were doing goes with the unpublished staging folder. A worker that
dies alone (the out-of-memory killer) is a `WorkerDied`, which the curation says in one line.
"""

import multiprocessing
import signal
import traceback
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from typing import Any

from chipadapt.curation.walk import Unit

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class WorkerTraceback(Exception):
    """The traceback of an error raised in a worker, as the cause of that error in the main process."""


class WorkerDied(RuntimeError):
    """A worker process ended before it answered (the out-of-memory killer's SIGKILL, most often): not an
    error of the code it ran, which would have come back as that error, so no traceback says anything."""


def _serve(conn: Connection, func: Callable[[Any], Any]) -> None:
    """A worker's loop: (index, unit) in, (index, ok, result or (error, traceback)) out; None ends it."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    # Blocked by the parent while it started this process (the mask is inherited through exec): a signal
    # sent to the group meanwhile is pending here, and is discarded now that it is ignored.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        while (task := conn.recv()) is not None:
            index, unit = task
            try:
                answer = (index, True, func(unit))
            except Exception as err:  # re-raised by the main process, as Pool.imap did
                answer = (index, False, (err, traceback.format_exc()))
            try:
                conn.send(answer)  # pickled whole before a byte is sent
            except Exception as err:  # an answer that cannot be pickled: said as what it is, not as a death
                text = traceback.format_exc()
                conn.send(
                    (index, False, (RuntimeError(f"a curation worker's answer: {type(err).__name__}: {err}"), text))
                )
    except (EOFError, BrokenPipeError):  # the main process is gone (SIGKILL): nobody to answer
        return


class WorkerPool:
    """`workers` spawned processes running `func`; a context manager around `imap`."""

    def __init__(self, workers: int, func: Callable[[Unit], Any]):
        self.count, self.func = max(1, int(workers)), func
        self.processes: dict[Connection, multiprocessing.Process] = {}  # by the pipe to it

    def __enter__(self) -> "WorkerPool":
        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch/tokenizer threads
        # Started by the first spawn otherwise, and its launch unblocks SIGINT and SIGTERM (rather than
        # restoring the mask it found), which would undo the blocking below for the first worker.
        resource_tracker.ensure_running()
        try:
            for _ in range(self.count):
                mine, theirs = ctx.Pipe()
                process = ctx.Process(target=_serve, args=(theirs, self.func))
                # The stop signals stay blocked in the new process until it ignores them: one that came
                # while it imported would end it in a KeyboardInterrupt traceback.
                previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
                try:
                    process.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
                theirs.close()  # the worker holds the only other end: its exit reads as EOF here
                self.processes[mine] = process
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            for pipe in self.processes:
                try:
                    pipe.send(None)
                except BrokenPipeError:
                    pass
            for process in self.processes.values():
                process.join(timeout=10)
        self._kill()  # at once on an interruption or an error; a straggler otherwise

    def _kill(self) -> None:
        for process in self.processes.values():
            if process.is_alive():
                process.kill()
        for pipe, process in self.processes.items():
            process.join()
            pipe.close()
        self.processes = {}

    def imap(self, units: Iterable[Unit]) -> Iterator[Any]:
        """`func(unit)` for each unit, in the order of `units`; one unit per worker at a time."""
        pending = iter(enumerate(units))
        busy: dict[Connection, tuple[int, Unit]] = {}  # pipe -> the task its worker holds
        done: dict[int, Any] = {}
        following = 0

        def hand_out(pipe: Connection) -> None:
            task = next(pending, None)
            if task is None:
                return
            busy[pipe] = task
            try:
                pipe.send(task)
            except BrokenPipeError:  # the worker is gone: the wait below reads its EOF and says so
                pass

        for pipe in self.processes:
            hand_out(pipe)
        while busy or following in done:
            if following in done:
                yield done.pop(following)
                following += 1
                continue
            for pipe in wait(list(busy)):
                try:
                    index, ok, value = pipe.recv()
                except EOFError:  # the worker died (killed, out of memory) before it answered
                    raise WorkerDied(self._died(self.processes[pipe], busy[pipe][1])) from None
                except Exception as err:  # an answer pickled in the worker that cannot be rebuilt here
                    unit = describe(busy[pipe][1])
                    raise RuntimeError(f"a curation worker's answer for {unit} could not be read: {err}") from err
                if not ok:
                    error, text = value
                    raise error from WorkerTraceback(text)
                del busy[pipe]
                done[index] = value
                hand_out(pipe)

    def _died(self, process: multiprocessing.Process, unit: Unit) -> str:
        process.join(timeout=5)
        code = process.exitcode
        if code is None or code >= 0:
            return f"a curation worker process ended (exit status {code}) while it curated {describe(unit)}"
        how = f"a curation worker process was killed by signal {-code}{_name_of(-code)}"
        # The kernel's out-of-memory killer sends SIGKILL; another signal (SIGSEGV in a parser) is no sign of it.
        memory = (
            ", likely out of memory (fewer data.curate.workers, or a lower data.curate.limits.max_bytes, the "
            "largest file a worker reads whole, use less)"
            if -code == signal.SIGKILL
            else ""
        )
        return f"{how} while it curated {describe(unit)}{memory}"


def _name_of(signum: int) -> str:
    """` (SIGKILL)`; "" for a signal with no name (a real-time one)."""
    try:
        return f" ({signal.Signals(signum).name})"
    except ValueError:
        return ""


def describe(unit: Unit) -> str:
    """A unit of work in a message: its archive, or its first file and how many more."""
    if unit.archive:
        return unit.archive
    if unit.files:
        more = len(unit.files) - 1
        return unit.files[0] + (f" (and {more} more file(s))" if more else "")
    return f"the links and hidden files of {unit.root}"
