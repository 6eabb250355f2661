"""Curation's worker processes. SIGTERM or Ctrl-C to curation's whole process group (a SLURM
preemption, a terminal's Ctrl-C) ends it in one line with status 128+signal: its multiprocessing.Pool
workers got the signal too, and killed by SIGTERM, one of them holding the task queue's lock, they
left the main process waiting on that lock forever; Ctrl-C gave each a KeyboardInterrupt traceback.
Results come in input order; a worker's error is raised, a worker's death told (by curate.py in one line,
the other workers stopped). A signal that comes once the corpus is published lets the run complete."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from functools import partial

import pytest
from conftest import ROOT
from omegaconf import OmegaConf

from chipadapt.curation import run as curation_run
from chipadapt.curation.walk import Unit
from chipadapt.curation.workers import WorkerDied, WorkerPool, WorkerTraceback

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
    with pytest.raises(
        WorkerDied, match=r"killed by signal 9 \(SIGKILL\) while it curated /in/big.v \(and 1 more file"
    ):
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


def killed_or_kept_busy(unit, s):
    """big.v: killed as the out-of-memory killer kills; any other unit: busy until it is ended, its pid noted."""
    if unit.files[0].endswith("big.v"):
        os.kill(os.getpid(), signal.SIGKILL)
    with open(os.path.join(os.environ["CHIPADAPT_TEST_MARKS"], str(os.getpid())), "w"):
        pass
    time.sleep(120)


def _curate_job_config(inputs, run) -> "OmegaConf":
    curate = OmegaConf.load(ROOT / "conf" / "data" / "curate" / "sample.yaml")
    curate.inputs, curate.workers = [str(p) for p in inputs], len(inputs)
    return OmegaConf.create({"paths": {"output_dir": str(run)}, "data": {"curate": curate}, "overwrite": False})


def test_a_worker_killed_alone_ends_curation_in_one_line_with_the_others_stopped(tmp_path, monkeypatch, capsys):
    """The trial's SIGKILL of one worker (as the OOM killer does) ended curate.py in a traceback, exit 1."""
    marks, run = tmp_path / "marks", tmp_path / "run"
    marks.mkdir()
    inputs = [tmp_path / "busy.v", tmp_path / "big.v"]  # a unit each, one per worker
    for path in inputs:
        path.write_text(RTL)
    monkeypatch.setenv("CHIPADAPT_TEST_MARKS", str(marks))
    monkeypatch.setattr(curation_run, "process_unit", killed_or_kept_busy)  # what the spawned workers run
    with pytest.raises(SystemExit) as stopped:
        curation_run.curate_job(_curate_job_config(inputs, run))
    assert stopped.value.code == 1  # a failure, not refused input (2)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"chipadapt: error: a curation worker process was killed by signal 9 (SIGKILL) while it curated {inputs[1]}, "
        "likely out of memory (fewer data.curate.workers, or a lower data.curate.limits.max_bytes, the largest file a "
        "worker reads whole, use less); the other workers were stopped and nothing was published: a rerun of the "
        "same command starts over"
    ]
    assert [p.name for p in run.iterdir()] == [".chipadapt.lock"]  # no corpus, no staging folder
    busy = [int(p.name) for p in marks.iterdir()]
    for pid in busy:  # the busy worker was ended (and reaped), not left running its unit
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@contextmanager
def signal_once_published(real_atomic_directory, *args, **kwargs):
    """curation's atomic_directory, then a SIGTERM to this process the moment its rename has published."""
    with real_atomic_directory(*args, **kwargs) as staging:
        yield staging
    os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_after_the_corpus_is_published_lets_the_run_complete(tmp_path, monkeypatch):
    """The trial's SIGTERM just after the rename: "nothing was published" over a published corpus (exit 143),
    or, once Python's exit had put the default handler back, death by the signal with no line at all."""
    from chipadapt import interrupts

    source = tmp_path / "in.v"
    source.write_text(RTL)
    cfg = _curate_job_config([source], tmp_path / "run")
    cfg.data.curate.workers = 1
    monkeypatch.setattr(curation_run, "atomic_directory", partial(signal_once_published, curation_run.atomic_directory))
    before = {sig: signal.getsignal(sig) for sig in curation_run.STOP_SIGNALS}
    interrupts.install()  # as the CLI job does
    try:
        report = curation_run.curate_job(cfg)
        # ignored, as Python's exit leaves it: a signal during the exit ends nothing
        assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in curation_run.STOP_SIGNALS)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        interrupts.reset()
    assert report["documents_written"] == 1
    assert (tmp_path / "run" / "corpus" / "curation_report.json").is_file()


def test_curation_leaves_the_signal_handlers_it_did_not_install_alone(tmp_path):
    """Called in-process (a notebook, pytest), curation keeps its caller's Ctrl-C."""
    source = tmp_path / "in.v"
    source.write_text(RTL)
    before = {sig: signal.getsignal(sig) for sig in curation_run.STOP_SIGNALS}
    cfg = _curate_job_config([source], tmp_path / "run")
    cfg.data.curate.workers = 1
    curation_run.curate_job(cfg)
    assert {sig: signal.getsignal(sig) for sig in curation_run.STOP_SIGNALS} == before
