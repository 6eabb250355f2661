"""Curation's worker processes. SIGTERM or Ctrl-C to curation's whole process group (a SLURM
preemption, a terminal's Ctrl-C) ends it in one line with status 128+signal: its multiprocessing.Pool
workers got the signal too, and killed by SIGTERM, one of them holding the task queue's lock, they
left the main process waiting on that lock forever; Ctrl-C gave each a KeyboardInterrupt traceback.
Results come in input order; a worker's error is raised, a worker's death told."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from chipadapt.curation.walk import Unit
from chipadapt.curation.workers import WorkerPool, WorkerTraceback

RTL = "module counter(input clk, output reg [3:0] q);\n  always @(posedge clk) q <= q + 1;\nendmodule\n"


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_to_the_process_group_ends_curation_in_one_line(tmp_path, name):
    sig = getattr(signal, name)
    inputs = []
    for file in ("quick.jsonl", "slow.jsonl"):  # a unit each: one worker done and waiting, one busy
        inputs.append(tmp_path / file)
        inputs[-1].write_text(json.dumps({"text": f"// {file}\n{RTL}"}) + "\n")
    marks, run = tmp_path / "marks", tmp_path / "run"
    marks.mkdir()
    command = [
        sys.executable,
        str(ROOT / "tests" / "helpers" / "slow_curation.py"),
        f"data.curate.inputs=[{','.join(map(str, inputs))}]",
        "data.curate.workers=2",
        f"hydra.run.dir={run}",
    ]
    env = {**os.environ, "CHIPADAPT_TEST_MARKS": str(marks), "PYTHONPATH": str(ROOT / "tests")}
    env.pop("HYDRA_FULL_ERROR", None)
    # Its own session, as a batch job's: the signal goes to the curation's group, not to pytest's.
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # two spawned workers on a loaded machine
        while not all((marks / p.name).exists() for p in inputs):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
            time.sleep(0.05)
        os.killpg(proc.pid, sig)
        _, stderr = proc.communicate(timeout=30)  # it waited forever
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 128 + sig, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    said = [line for line in stderr.splitlines() if line.startswith("chipadapt:")]
    assert said == [
        f"chipadapt: interrupted ({name}); nothing was published, a rerun with the same hydra.run.dir starts over"
    ], stderr[-3000:]
    assert not (run / "corpus").exists() and not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def echo_slowest_first(unit: Unit) -> str:
    time.sleep(0.3 if unit.root == "a" else 0)
    return unit.root


def refuse(unit: Unit) -> str:
    raise ValueError(f"no {unit.root}")


def die(unit: Unit) -> str:
    os.kill(os.getpid(), signal.SIGKILL)


def test_results_come_in_input_order_and_a_workers_error_is_raised_with_its_traceback():
    """Input order decides which copy of a duplicate is kept, whichever worker finishes first."""
    units = [Unit(source="s", root=root, files=(f"/in/{root}.v",)) for root in "abcde"]
    with WorkerPool(2, echo_slowest_first) as pool:
        assert list(pool.imap(units)) == list("abcde")
    with pytest.raises(ValueError, match="no a") as raised, WorkerPool(1, refuse) as pool:
        list(pool.imap(units))
    assert isinstance(raised.value.__cause__, WorkerTraceback) and "in refuse" in str(raised.value.__cause__)


def test_a_worker_killed_outright_is_an_error_naming_its_files_not_a_hang():
    """multiprocessing.Pool started another worker and waited forever for the lost unit (the out-of-memory
    killer's SIGKILL)."""
    units = [Unit(source="s", root="/in", files=("/in/big.v", "/in/b.v"))]
    with pytest.raises(RuntimeError, match=r"killed by SIGKILL\) while it curated /in/big.v \(and 1 more file"):
        with WorkerPool(1, die) as pool:
            list(pool.imap(units))


def unpicklable(unit: Unit):
    return lambda: unit  # no pickle for a lambda


def test_an_answer_that_cannot_be_pickled_is_said_as_that_not_as_a_dead_worker():
    """The worker's send raised, it printed a traceback and exited 1, and the main process blamed memory."""
    units = [Unit(source="s", root="a", files=("/in/a.v",))]
    with pytest.raises(RuntimeError, match=r"a curation worker's answer: .*(pickle|lambda)") as raised:
        with WorkerPool(1, unpicklable) as pool:
            list(pool.imap(units))
    assert "out of memory" not in str(raised.value)
