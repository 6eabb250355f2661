"""SIGINT, SIGTERM and SLURM's warning signals (USR1, USR2) as a clean stop: the run's manifest says
`interrupted`, training writes its last checkpoint at the next step boundary, temporary outputs are
removed on the way out; after a warning signal the SLURM job is also requeued, as the job stops.

The handlers are installed when the job starts (`install()`, before data preparation) and stay
installed; between two jobs of a sweep the `Interrupted` they raise ends the sweep in cli.launch.
Outside training the first signal raises `Interrupted` at once, so `finally` blocks and the atomic
writers clean up. Inside `deferred()` (the Lightning fit loop) it is only recorded, and the
`StopAtStepBoundary` callback saves `last.ckpt` and raises after the optimizer step completes:
stopping mid-step would checkpoint half-updated weights. A second Ctrl-C stops at once, without that
checkpoint, and is told as an interruption like the first (`unmasked()`), also when it lands inside
that save (whose temporary file is removed; the previous `last.ckpt` stays as it was). Once training
has finished (`training_finished()`), a warning signal no longer stops the job: the validation and the
model save that follow are what a requeued job would redo."""

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from chipadapt.io.lock import is_secondary_rank

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# SLURM's warning before a time limit or a preemption: `sbatch --signal=USR1@120`, submitit's USR2.
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)

_state: dict = {"received": None, "deferring": False, "trained": False, "late": None, "launcher": {}}


class Interrupted(BaseException):
    """Raised by the handlers; a BaseException so `except Exception` blocks do not swallow it."""

    def __init__(self, signum: int, note: str | None = None, launcher_status: int | None = None):
        name = signal.Signals(signum).name
        super().__init__(f"{name}; {note}" if note else name)
        self.signum = signum
        self.launcher_status = launcher_status

    @property
    def exit_status(self) -> int:
        # A launcher that requeued the job may read the exit status (submitit's local executor does).
        return self.launcher_status if self.launcher_status is not None else 128 + self.signum


def _say(text: str) -> None:
    # os.write, not print: a signal handler may run while the main thread is inside a print to stderr.
    if not is_secondary_rank():
        os.write(2, f"chipadapt: {text}\n".encode())


def stop(signum: int) -> Interrupted:
    """The exception that ends the job for `signum`, after requeueing the SLURM job when a warning
    signal asked for it (also one that came after training, before a SIGTERM cut the save short)."""
    requeue_for = signum if signum in REQUEUE_SIGNALS else _state["late"]
    if requeue_for is None:
        return Interrupted(signum)
    from chipadapt.scaleout.slurm_requeue import requeue_job

    requeued = requeue_job(requeue_for, _state["launcher"].get(requeue_for))
    return Interrupted(signum, requeued.note, requeued.exit_status)


def handle_signal(signum, frame) -> None:
    if signum in REQUEUE_SIGNALS and _state["trained"]:
        if _state["late"] is None:
            _state["late"] = signum
            _say(f"{signal.Signals(signum).name} after training had finished: completing the run (nothing to requeue)")
        return
    if _state["received"] is not None:
        if signum == signal.SIGINT:  # a second Ctrl-C: the user does not want to wait for the save
            raise stop(signum)
        return  # already stopping (SLURM's SIGTERM after a requeue, say): let the clean-up finish
    _state["received"] = signum
    if not _state["deferring"]:
        raise stop(signum)
    if signum == signal.SIGINT:
        _say("stopping after this step: saving a checkpoint; press Ctrl-C again to stop now without saving")
    else:
        _say(f"{signal.Signals(signum).name}: stopping after this step: saving a checkpoint")


def take_over(signals=STOP_SIGNALS + REQUEUE_SIGNALS) -> dict:
    """Install the handler for `signals`; returns the handlers it replaced. A launcher's handler of a
    warning signal (submitit's) is kept, to requeue the job its way when the job stops."""
    replaced = {}
    for sig in signals:
        previous = signal.getsignal(sig)
        replaced[sig] = previous
        if sig in REQUEUE_SIGNALS and callable(previous) and not _is_ours_or_lightnings(previous):
            _state["launcher"][sig] = previous
        signal.signal(sig, handle_signal)
    return replaced


def _is_ours_or_lightnings(handler) -> bool:
    module = getattr(handler, "__module__", None) or type(handler).__module__
    return handler is handle_signal or module.startswith("lightning")


def install() -> None:
    """Take over the signals for this process (entry points call it once, as the job starts)."""
    reset()
    take_over()


def reset() -> None:
    """Forget the signals of an earlier job in this process (not whether a fit is running now)."""
    _state.update(received=None, trained=False, late=None, launcher={})


def owns(sig: int) -> bool:
    return signal.getsignal(sig) is handle_signal


def received() -> int | None:
    return _state["received"]


def training_finished() -> None:
    """Training ran to its end: a warning signal from now on (or one that came after the last step's
    boundary) lets the job complete instead of stopping it."""
    _state["trained"] = True
    if _state["received"] in REQUEUE_SIGNALS:
        _state["late"], _state["received"] = _state["received"], None


def interruption_behind(err: BaseException) -> Interrupted | None:
    """The `Interrupted` that `err` was raised while handling, if any (its chain of causes and contexts)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, Interrupted):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def unmasked() -> Iterator[None]:
    """Within the block, an error raised while an `Interrupted` was on its way out is that interruption.
    A library whose clean-up fails once our handler cut its work short replaces the interruption with
    its own error: torch's zip writer, stopped by a second Ctrl-C in the middle of a checkpoint, raises
    `RuntimeError: unexpected pos` from its `__exit__`, and the job ended in two chained tracebacks,
    exit status 1 and a manifest saying `failed`, where the user had pressed Ctrl-C."""
    try:
        yield
    except Exception as err:
        behind = interruption_behind(err)
        if behind is None:
            raise
        raise behind from None


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block a signal only marks the run as interrupted; raise_if_received() acts on it."""
    previous = _state["deferring"]
    _state["deferring"] = True
    try:
        with unmasked():
            yield
    finally:
        _state["deferring"] = previous
    raise_if_received()


def raise_if_received() -> None:
    if _state["received"] is not None:
        raise stop(_state["received"])
