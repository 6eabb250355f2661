"""A Ctrl-C in the second a job's process takes to tear down after its manifest said completed (torch's
teardown, after Python gave SIGINT back its default action) killed it with status 130 and no line: the
trial's annotate. From the exit on, a stop signal is ignored (cli.ignore_signals_at_exit, run at exit)."""

import signal

from chipadapt import cli, interrupts
from chipadapt.cli import ignore_signals_at_exit


def test_stop_signals_are_ignored_once_the_process_exits(monkeypatch):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        interrupts.install()
        monkeypatch.setitem(cli._last_job, "completed", True)  # the last job completed
        ignore_signals_at_exit()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # Python's teardown keeps an ignored signal
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
