"""The same training run in one process and in two CPU processes (DDP over gloo), each in its own
folder under `tmp_path` (`one`, `two`): tests compare what the two did with the same global batches."""

import subprocess

from conftest import run_train

TWO_CPU_PROCESSES = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]


Run = subprocess.CompletedProcess


def one_and_two_processes(common: list[str], tmp_path) -> tuple[Run, Run]:
    single = run_train([*common, f"hydra.run.dir={tmp_path / 'one'}"])
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run_train([*common, *TWO_CPU_PROCESSES, f"hydra.run.dir={tmp_path / 'two'}"], timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return single, ddp


def one_here_and_two_processes(common: list[str], tmp_path) -> Run:
    """The same as one_and_two_processes, with the one-process run in this process (train.py's job on the composed
    config): only DDP needs processes of its own, and each fresh train.py spends seconds importing."""
    from conftest import compose

    from chipadapt.pipeline import train

    train(compose(common, tmp_path / "one"))
    ddp = run_train([*common, *TWO_CPU_PROCESSES, f"hydra.run.dir={tmp_path / 'two'}"], timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return ddp
