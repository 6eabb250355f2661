"""The other processes of a distributed run take rank 0's answer to whether it resumes (stages/rank_0_decision.py):
only the answer of this launch (written while rank 0 holds the run folder's lock), or rank 0's refusal at once."""

import json
import os
import socket
import time

import pytest
from conftest import TINY_FAST, compose
from helpers.launch_env import launched_with

from chipadapt.errors import ChipadaptError
from chipadapt.io.lock import LOCK_NAME, run_folder_lock
from chipadapt.stages import rank_0_decision as answers

LAUNCH = {"TORCHELASTIC_RUN_ID": "none", "TORCHELASTIC_RESTART_COUNT": "0", "MASTER_ADDR": "127.0.0.1"}


@pytest.fixture
def torchrun(monkeypatch):
    """torchrun --nproc_per_node 2 --master_port 29517: every launch has the same launcher variables."""
    monkeypatch.delenv(answers.DECISION_VARIABLE, raising=False)
    launched_with(monkeypatch, **LAUNCH, MASTER_PORT="29517", WORLD_SIZE="2")

    def as_rank(rank: int) -> None:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.delenv(answers.DECISION_VARIABLE, raising=False)  # torchrun's processes share no environment

    return as_rank


def _answer_file(out, answer: dict) -> None:
    """An answer file as rank 0 of a launch with this process's launcher variables left it."""
    (out / "checkpoints").mkdir(exist_ok=True)
    recorded = {"host": socket.gethostname(), "launch": answers.launch(), "written": time.time(), **answer}
    (out / "checkpoints" / answers.DECISION_FILE).write_text(json.dumps(recorded))


def test_an_earlier_launchs_answer_is_not_taken_for_this_ones(tmp_path, torchrun, monkeypatch):
    """Launch 1 (resume=false) started over and was killed: its answer stayed. In launch 2 (resume=true) rank 1 took
    it before rank 0 answered, started from step 0 while rank 0 resumed, and the processes hung."""
    torchrun(0)
    with run_folder_lock(tmp_path):  # launch 1's rank 0, holding the folder, answered "from step 0"
        lock = tmp_path / LOCK_NAME
        held = {"inode": lock.stat().st_ino, "changed_ns": lock.stat().st_mtime_ns, "pid": os.getpid()}
    _answer_file(tmp_path, {"folder": str(tmp_path.resolve()), "checkpoint": None, "lock": held, "pid": os.getpid()})
    with run_folder_lock(tmp_path):  # launch 2's rank 0 holds the folder and has not answered yet
        torchrun(1)
        with pytest.raises(ChipadaptError, match="rank 0 said within 0 s neither"):
            answers.rank_0_decision(tmp_path, wait_s=0)
        torchrun(0)
        answers.record_rank_0_decision(tmp_path, str(tmp_path / "checkpoints" / "last.ckpt"))
        torchrun(1)
        assert answers.rank_0_decision(tmp_path, wait_s=0) == str(tmp_path / "checkpoints" / "last.ckpt")
    # Rank 0 gone (killed: the file stays), its answer goes with its lock: this launch's other ranks are told it
    # ended rather than given the answer.
    with pytest.raises(ChipadaptError, match=r"answered that the run resumes .*last\.ckpt, then ended"):
        answers.rank_0_decision(tmp_path, wait_s=0)


def test_rank_0_answers_holding_the_folder_and_takes_the_answer_away_when_its_job_ends(tmp_path, torchrun, monkeypatch):
    import chipadapt.pipeline as pipeline

    torchrun(0)
    cfg = compose([*TINY_FAST, "trainer.max_steps=2"], tmp_path)
    monkeypatch.setattr(pipeline, "check_trainer_on_this_machine", lambda trainer: None)  # two CPU processes
    seen = {}

    def runner(cfg, out, manifest):
        torchrun(1)  # what another process of the launch reads meanwhile
        seen["answer"] = answers.rank_0_decision(out, wait_s=0)
        torchrun(0)
        return {}

    monkeypatch.setattr(pipeline, "instantiate", lambda target: runner)
    assert pipeline.train(cfg) == {}
    assert seen == {"answer": None}  # a fresh folder: from step 0
    assert not (tmp_path / "checkpoints" / answers.DECISION_FILE).exists()
    assert answers.DECISION_VARIABLE not in __import__("os").environ


def test_a_refusal_of_rank_0_stops_the_others_at_once_with_its_line(tmp_path, torchrun, monkeypatch):
    """srun (or processes started by hand) do not kill the others when rank 0 exits 2: they waited WAIT_S and said
    that rank 0 gave no answer."""
    import chipadapt.pipeline as pipeline

    torchrun(0)
    cfg = compose([*TINY_FAST, "trainer.max_steps=2"], tmp_path)
    monkeypatch.setattr(pipeline, "check_trainer_on_this_machine", lambda trainer: None)  # two CPU processes

    def check_output_folder(*args, **kwargs):
        raise ChipadaptError(f"{tmp_path / 'model'}: holds files train.py did not write")

    monkeypatch.setattr(pipeline, "check_output_folder", check_output_folder)
    with pytest.raises(ChipadaptError, match="did not write"):
        pipeline.train(cfg)
    torchrun(1)
    started = time.monotonic()
    with pytest.raises(ChipadaptError, match=r"^rank 0 stopped: .*holds files train.py did not write$"):
        answers.rank_0_decision(tmp_path, wait_s=3)
    assert time.monotonic() - started < 1.0


def test_an_earlier_launchs_refusal_is_named_not_taken(tmp_path, torchrun):
    torchrun(0)
    _answer_file(tmp_path, {"refused": "model/: refused", "written": time.time() - 3600})  # before this process
    torchrun(1)
    with pytest.raises(ChipadaptError, match="rank 0 said within 0 s neither.*earlier launch's refusal.*refused"):
        answers.rank_0_decision(tmp_path, wait_s=0)


def test_a_lone_process_with_a_rank_variable_decides_for_itself(tmp_path, monkeypatch):
    """A cluster that sets SLURM_PROCID or NODE_RANK for a one-process job: that process waited for a rank 0."""
    from chipadapt.stages.resume_decision import resume_checkpoint

    monkeypatch.delenv(answers.DECISION_VARIABLE, raising=False)
    launched_with(monkeypatch, NODE_RANK="1")
    monkeypatch.setattr(answers, "WAIT_S", 0.0)
    assert resume_checkpoint(compose([*TINY_FAST, "trainer.max_steps=2"], tmp_path), tmp_path) is None


@pytest.mark.parametrize(
    ("failure", "line"),
    [
        (RuntimeError("CUDA out of memory while loading the model"), "RuntimeError: CUDA out of memory while loading"),
        (ChipadaptError("data.train: no such file"), "data.train: no such file"),
    ],
)
def test_rank_0_that_fails_after_answering_leaves_its_failure_for_the_others(tmp_path, torchrun, failure, line):
    """Rank 0 answered, then failed (out of memory while loading the model): its answer was removed, and a process
    that had not yet taken it waited out WAIT_S. It stops at once with rank 0's failure."""
    torchrun(0)
    with pytest.raises(type(failure)):
        with answers.rank_0_answers(tmp_path, trains=True) as answer:
            with run_folder_lock(tmp_path):
                answer(None)
                raise failure
    assert answers.DECISION_VARIABLE not in os.environ
    torchrun(1)
    started = time.monotonic()
    with pytest.raises(ChipadaptError, match=f"^rank 0 stopped: rank 0 failed after answering: {line}"):
        answers.rank_0_decision(tmp_path, wait_s=3)
    assert time.monotonic() - started < 1.0
