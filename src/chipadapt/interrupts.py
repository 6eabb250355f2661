"""SIGINT and SIGTERM as a clean stop: the run's manifest says `interrupted`, training writes its
last checkpoint at the next step boundary, temporary outputs are removed on the way out.

Outside training the first signal raises `Interrupted` at once, so `finally` blocks and the
atomic writers clean up. Inside `deferred()` (the Lightning fit loop) it is only recorded, and the
`StopAtStepBoundary` callback saves `last.ckpt` and raises after the optimizer step completes:
stopping mid-step would checkpoint half-updated weights."""

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_state = {"received": None, "deferring": False}


class Interrupted(BaseException):
    """Raised by the handlers; a BaseException so `except Exception` blocks do not swallow it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def handle_signal(signum, frame) -> None:
    _state["received"] = signum
    if not _state["deferring"]:
        raise Interrupted(signum)


def install() -> None:
    """Take over SIGINT and SIGTERM for this process (entry points call it once)."""
    _state["received"] = None
    signal.signal(signal.SIGINT, handle_signal)
    signal.signal(signal.SIGTERM, handle_signal)


def received() -> int | None:
    return _state["received"]


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block a signal only marks the run as interrupted; raise_if_received() acts on it."""
    previous = _state["deferring"]
    _state["deferring"] = True
    try:
        yield
    finally:
        _state["deferring"] = previous
    raise_if_received()


def raise_if_received() -> None:
    if _state["received"] is not None:
        raise Interrupted(_state["received"])
