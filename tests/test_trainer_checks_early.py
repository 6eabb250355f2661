"""Trainer settings are checked before any data is prepared or any model loads: one
`chipadapt: error:` line naming the key, exit status 2, and not Hydra's "Error executing job" line."""

from pathlib import Path

import pytest
import torch
from conftest import TINY_FAST, compose, run_train

from chipadapt.config_schema import validate
from chipadapt.errors import ChipadaptError
from chipadapt.trainer_schema import check_trainer_on_this_machine


def composed(tmp_path, *overrides):
    return compose([*TINY_FAST, *overrides], tmp_path / "run")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.precision=foo"], r"trainer.precision: 'foo' is not a precision Lightning accepts \(.*'bf16-mixed'"),
        (["+trainer.foo=1"], r"trainer.foo: not an argument of lightning.Trainer"),
        (["+trainer.gradient_clip_val=0.5"], r"trainer.gradient_clip_val: .*optim.gradient_clip_val"),
        (["trainer.accelerator=gpux"], r"trainer.accelerator: 'gpux' is not an accelerator .*cpu"),
    ],
)
def test_a_trainer_setting_lightning_refuses_is_named_by_its_key(tmp_path, overrides, message):
    with pytest.raises(ChipadaptError, match=message):
        validate(composed(tmp_path, *overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["trainer=gpu"],  # static checks only: whether this machine has a GPU is asked by the job (below)
        ["trainer=ddp", "trainer.precision=32"],
        ["trainer=fsdp"],
        ["trainer=deepspeed_zero3", "trainer.precision=bf16"],
        ["trainer.precision=16-true", "+trainer.deterministic=true"],
    ],
)
def test_the_shipped_trainers_and_lightning_values_pass(tmp_path, overrides):
    validate(composed(tmp_path, *overrides))


def test_a_gpu_asked_on_a_machine_without_one(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for trainer in ("gpu", "ddp"):
        with pytest.raises(ChipadaptError, match=r"trainer.accelerator: 'gpu' .* no GPU.*trainer.accelerator=cpu"):
            check_trainer_on_this_machine(composed(tmp_path, f"trainer={trainer}").trainer)
    check_trainer_on_this_machine(
        composed(tmp_path, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2").trainer
    )
    with pytest.raises(ChipadaptError, match=r"trainer.accelerator: 'cuda'"):
        check_trainer_on_this_machine(composed(tmp_path, "trainer.accelerator=cuda").trainer)
    with pytest.raises(ChipadaptError, match=r"trainer=fsdp: FSDP needs GPUs .*trainer=ddp"):
        check_trainer_on_this_machine(composed(tmp_path, "trainer=fsdp", "trainer.accelerator=cpu").trainer)
    with pytest.raises(ChipadaptError, match=r"trainer=fsdp: FSDP needs GPUs"):  # auto finds only the CPU here
        check_trainer_on_this_machine(composed(tmp_path, "trainer=fsdp", "trainer.accelerator=auto").trainer)


def test_more_gpus_asked_than_the_machine_has(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_trainer_on_this_machine(composed(tmp_path, "trainer=ddp").trainer)  # -1: every GPU
    check_trainer_on_this_machine(composed(tmp_path, "trainer=gpu", "trainer.devices=2").trainer)
    with pytest.raises(ChipadaptError, match=r"trainer.devices: 4 .* has 2 GPUs"):
        check_trainer_on_this_machine(composed(tmp_path, "trainer=gpu", "trainer.devices=4").trainer)
    with pytest.raises(ChipadaptError, match=r"trainer.devices: \[0, 3\] .* has 2 GPUs"):
        check_trainer_on_this_machine(composed(tmp_path, "trainer=gpu", "trainer.devices=[0,3]").trainer)


def test_deepspeed_not_installed_is_told_before_the_data(tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ChipadaptError, match=r"trainer=deepspeed_\*: DeepSpeed is not installed"):
        check_trainer_on_this_machine(composed(tmp_path, "trainer=deepspeed_zero2").trainer)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer=gpu"], "trainer=cpu"),
        (["trainer=fsdp", "trainer.accelerator=cpu"], "FSDP needs GPUs"),
        (["trainer.precision=foo"], "trainer.precision"),
    ],
)
def test_train_py_stops_in_one_line_before_preparing_data(tmp_path, overrides, message):
    run_dir = tmp_path / "run"
    result = run_train([*TINY_FAST, *overrides, f"hydra.run.dir={run_dir}"])
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chipadapt: error: ") and message in lines[0], result.stderr
    assert "Error executing job" not in result.stderr + result.stdout
    # Nothing was prepared, loaded or recorded: the job stopped before its manifest was written.
    assert not (run_dir / "manifest.json").exists() and "plan:" not in result.stdout + result.stderr


def test_a_mistake_outside_the_trainer_is_told_without_importing_lightning(tmp_path):
    """Lightning's names are the config's last checks (importing lightning is about 5 CPU-s): `optim.lr=abc`
    took 7.3 CPU-s to refuse, 0.8 now."""
    import subprocess
    import sys

    script = f"""
import sys
from conftest import TINY_FAST, compose
from chipadapt.config_schema import validate
from chipadapt.errors import ChipadaptError
try:
    validate(compose([*TINY_FAST, "optim.lr=abc"], {str(tmp_path / "run")!r}))
except ChipadaptError as err:
    print("refused:", err)
print("lightning imported:", "lightning" in sys.modules)
"""
    tests = str(Path(__file__).parent)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tests, timeout=120)
    assert "refused: optim.lr" in proc.stdout, proc.stdout + proc.stderr
    assert "lightning imported: False" in proc.stdout
