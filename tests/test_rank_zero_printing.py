"""Under Lightning's own launcher (trainer=ddp trainer.devices=2, no torchrun) every process runs the
whole script: the results table, the plan line and the "interrupted" line came once per process. Only
global rank 0 says them; the other processes are told apart by what their launcher sets (LOCAL_RANK
for Lightning's, RANK for torchrun, SLURM_PROCID for srun)."""

import logging
import os
import signal
import subprocess
import sys

import pytest
from helpers.launch_env import LAUNCHER_VARIABLES, launched_with

from chipadapt.after_interruption import say_interrupted
from chipadapt.interrupts import Interrupted
from chipadapt.stages.causal_lm import tell_plan

OTHER_PROCESSES = [
    {"LOCAL_RANK": "1", "WORLD_SIZE": "2"},
    {"LOCAL_RANK": "1"},  # a worker of trainer.strategy=ddp_fork/ddp_spawn: no WORLD_SIZE
    {"TORCHELASTIC_RUN_ID": "none", "RANK": "3", "WORLD_SIZE": "4"},
    {"SLURM_PROCID": "1", "SLURM_NTASKS": "2"},
]
PLAN = {"text": "plan: global batch 8 = micro 1 x 2 processes x 4 accumulation", "note": None}


def table_printed(env: dict[str, str]) -> str:
    """What report.console prints in a process started with `env` (the console is made at import)."""
    clean = {key: value for key, value in os.environ.items() if key not in LAUNCHER_VARIABLES}
    script = "from chipadapt.report import console; console.print('results table')"
    done = subprocess.run([sys.executable, "-c", script], env={**clean, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def as_process(monkeypatch, env: dict[str, str]) -> None:
    launched_with(monkeypatch, **env)


@pytest.mark.parametrize("env", OTHER_PROCESSES)
def test_the_other_processes_print_neither_the_table_nor_the_plan(env, monkeypatch, caplog):
    assert table_printed(env) == ""
    as_process(monkeypatch, env)
    with caplog.at_level(logging.INFO):
        tell_plan(PLAN)
    assert caplog.text == ""


def test_a_lone_process_its_cluster_gave_a_rank_prints_the_table():
    # A cluster may set SLURM_PROCID or NODE_RANK for every process; one no launcher started is its own rank 0.
    assert table_printed({"SLURM_PROCID": "1"}) == "results table\n"
    assert table_printed({"NODE_RANK": "2"}) == "results table\n"


def test_global_rank_0_prints_both(monkeypatch, caplog):
    assert table_printed({"LOCAL_RANK": "0"}) == "results table\n"
    as_process(monkeypatch, {"LOCAL_RANK": "0"})
    with caplog.at_level(logging.INFO):
        tell_plan(PLAN)
    assert PLAN["text"] in caplog.text


@pytest.mark.parametrize("env", OTHER_PROCESSES)
def test_the_interrupted_line_comes_from_rank_0_alone(env, monkeypatch, capsys):
    stop = Interrupted(signal.SIGUSR1)
    as_process(monkeypatch, {})
    say_interrupted(stop, "a rerun resumes")
    assert capsys.readouterr().err == "chipadapt: interrupted (SIGUSR1); a rerun resumes\n"
    as_process(monkeypatch, env)
    say_interrupted(stop, "a rerun resumes")
    assert capsys.readouterr().err == ""
