"""Another process that comes after rank 0 has finished stops at once with what rank 0 decided
(stages/rank_0_decision.py): it waited out WAIT_S and blamed rank 0's silence. Only where the answer is known to be
this launch's: written during this process's life, or by the same task set of a SLURM job step (a node whose container
starts late comes after rank 0's refusal). An earlier launch's answer is still set aside."""

import json
import logging
import time

import pytest
from helpers.launch_env import launched_with

from chipadapt.errors import ChipadaptError
from chipadapt.io.command_line import COMMAND_ENV, launch_command
from chipadapt.io.lock import run_folder_lock
from chipadapt.stages import rank_0_decision as answers


@pytest.fixture
def launched(monkeypatch):
    """This process started as `variables` say, with no launcher variable of the test's own environment left."""

    def start(**variables: str) -> None:
        for variable in (*answers.LAUNCH_VARIABLES, answers.DECISION_VARIABLE):
            monkeypatch.delenv(variable, raising=False)
        launched_with(monkeypatch, **variables)

    return start


SRUN_TASK_1 = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2", "SLURM_PROCID": "1"}
TORCHRUN_RANK_1 = {"TORCHELASTIC_RUN_ID": "none", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517"}


def _refusal_before_this_process(out, line: str) -> None:
    """Rank 0's refusal as written by a process with this one's launcher variables and command line, an hour before
    this one started."""
    (out / "checkpoints").mkdir(exist_ok=True)
    recorded = {
        "refused": line,
        "written": time.time() - 3600,
        "launch": answers.launch(),
        "command": launch_command(),
        "host": "node1",
        "pid": 7,
    }
    (out / "checkpoints" / answers.DECISION_FILE).write_text(json.dumps(recorded))


def test_a_task_of_the_step_started_after_rank_0_refused_stops_at_once(tmp_path, launched):
    launched(**SRUN_TASK_1)
    _refusal_before_this_process(tmp_path, "model/: holds files train.py did not write")
    started = time.monotonic()
    with pytest.raises(ChipadaptError, match=r"^rank 0 stopped: model/: holds files train.py did not write$"):
        answers.rank_0_decision(tmp_path, wait_s=3)
    assert time.monotonic() - started < 1.0


def test_a_refusal_of_the_steps_earlier_command_is_set_aside(tmp_path, launched, monkeypatch, caplog):
    """`srun -n2 bash -c 'train.py out=X; train.py out=X overwrite=true'`: the second command's tasks have the first
    one's SLURM variables, and one of them that starts after the first command's rank 0 refused waits for its own
    rank 0 rather than stopping with that refusal."""
    launched(**SRUN_TASK_1)
    monkeypatch.setenv(COMMAND_ENV, json.dumps(["train.py", "out=X"]))
    _refusal_before_this_process(tmp_path, "X/model: holds files train.py did not write")
    monkeypatch.setenv(COMMAND_ENV, json.dumps(["train.py", "out=X", "overwrite=true"]))
    with caplog.at_level(logging.WARNING, logger=answers.__name__):
        with pytest.raises(ChipadaptError, match="rank 0 said within 0 s neither.*earlier launch's refusal"):
            answers.rank_0_decision(tmp_path, wait_s=0)
    assert "not known to be this launch's" in caplog.text
    monkeypatch.setenv(COMMAND_ENV, json.dumps(["train.py", "out=X"]))  # the same command: taken (indistinguishable)
    with pytest.raises(ChipadaptError, match=r"^rank 0 stopped: X/model: holds files"):
        answers.rank_0_decision(tmp_path, wait_s=0)


def test_rank_0_records_its_command_line_with_a_refusal(tmp_path, launched, monkeypatch):
    launched(**{**SRUN_TASK_1, "SLURM_PROCID": "0"})
    monkeypatch.setenv(COMMAND_ENV, json.dumps(["train.py", "out=X"]))
    with pytest.raises(ChipadaptError):
        with answers.rank_0_answers(tmp_path, trains=True):
            raise ChipadaptError("X/model: refused")
    recorded = json.loads((tmp_path / "checkpoints" / answers.DECISION_FILE).read_text())
    assert recorded["refused"] == "X/model: refused" and recorded["command"] == ["train.py", "out=X"]


BY_HAND = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "1", "WORLD_SIZE": "2", "RANK": "1"}
TORCHRUN_ALONE = {**TORCHRUN_RANK_1, "WORLD_SIZE": "2", "RANK": "1"}  # a fixed port: every launch alike


@pytest.mark.parametrize(
    ("before", "now"),
    [
        (SRUN_TASK_1, {**SRUN_TASK_1, "SLURM_RESTART_COUNT": "1"}),  # the requeued job: the refusal is its first run's
        (SRUN_TASK_1, {**SRUN_TASK_1, "SLURM_STEP_ID": "1"}),  # the next step of the job
        ({**SRUN_TASK_1, **TORCHRUN_RANK_1},) * 2,  # torchrun's workers in a step: it may launch several times
        (BY_HAND,) * 2,  # processes started by hand in a step of one task (srun --pty bash)
        ({**SRUN_TASK_1, "SLURM_STEP_ID": "4294967291"},) * 2,  # one of Slurm's own steps, not srun's
        (TORCHRUN_ALONE,) * 2,
    ],
)
def test_an_earlier_launchs_refusal_is_still_set_aside(tmp_path, launched, before, now, caplog):
    launched(**before)
    _refusal_before_this_process(tmp_path, "model/: refused")
    launched(**now)
    with caplog.at_level(logging.WARNING, logger=answers.__name__):
        with pytest.raises(ChipadaptError, match="rank 0 said within 0 s neither.*earlier launch's refusal.*refused"):
            answers.rank_0_decision(tmp_path, wait_s=0)
    assert "not known to be this launch's" in caplog.text and "model/: refused" in caplog.text


@pytest.mark.parametrize(("checkpoint", "decided"), [(None, "starts from step 0"), ("last.ckpt", "resumes last.ckpt")])
def test_rank_0_that_answered_and_ended_is_named_at_once(tmp_path, launched, checkpoint, decided):
    """Rank 0 answered holding the folder, and its lock is gone (killed, or failed while the others had not joined):
    the answer is this launch's (written during this process's life), and no rank 0 will join."""
    launched(**TORCHRUN_RANK_1, WORLD_SIZE="2", RANK="0")
    with run_folder_lock(tmp_path):
        answers.record_rank_0_decision(tmp_path, checkpoint)
    launched(**TORCHRUN_RANK_1, WORLD_SIZE="2", RANK="1")
    started = time.monotonic()
    with pytest.raises(ChipadaptError, match=rf"^rank 0 \(pid \d+ on .+\) answered that the run {decided}, then ended"):
        answers.rank_0_decision(tmp_path, wait_s=3)
    assert time.monotonic() - started < 1.0


def test_an_answer_from_before_this_process_whose_writer_ended_is_waited_past(tmp_path, launched):
    """The same, written before this process started under torchrun's variables alike in every launch: an earlier
    launch's rank 0, killed; this launch's rank 0 may still come."""
    launched(**TORCHRUN_RANK_1, WORLD_SIZE="2", RANK="0")
    with run_folder_lock(tmp_path):
        answers.record_rank_0_decision(tmp_path, None)
    path = tmp_path / "checkpoints" / answers.DECISION_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "written": time.time() - 3600}))
    launched(**TORCHRUN_RANK_1, WORLD_SIZE="2", RANK="1")
    with pytest.raises(ChipadaptError, match="rank 0 said within 0 s neither"):
        answers.rank_0_decision(tmp_path, wait_s=0)


def test_an_answer_while_rank_0_holds_the_folder_is_taken(tmp_path, launched):
    launched(**{**SRUN_TASK_1, "SLURM_PROCID": "0"})
    with run_folder_lock(tmp_path):
        answers.record_rank_0_decision(tmp_path, "last.ckpt")
        launched(**SRUN_TASK_1)
        assert answers.rank_0_decision(tmp_path, wait_s=0) == "last.ckpt"
