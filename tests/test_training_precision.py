"""Training precision: weights that train are float32 master weights whatever `model.dtype` says
(bf16 compute comes from trainer.precision=bf16-mixed); half-precision weights that would lose their
updates are announced; validation metrics add up in float32 or wider."""

import logging

import pytest
import torch
from conftest import compose

COMMON = ["stage.validate_before=false", "callbacks.checkpoint=null", "loss_guard.enabled=false", "optim.lr=5e-6"]


def start_and_end_weights(cfg, run_dir) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    from chipadapt.models.hf_folder import resolve_model_folder

    start = load_file(str(resolve_model_folder(cfg.model) / "model.safetensors"))
    return start, load_file(str(run_dir / "model" / "model.safetensors"))


def changed_fraction(start: dict, end: dict) -> float:
    # The start as the run's own dtype holds it: a bf16 run's rounding of the start is not training.
    changed = sum(int((end[n] != start[n].to(end[n].dtype)).sum()) for n in start)
    return changed / sum(t.numel() for t in start.values())


def test_full_fine_tuning_of_a_bfloat16_model_trains_float32_master_weights(tmp_path, tiny_overrides):
    from chipadapt.pipeline import train

    cfg = compose(
        [*tiny_overrides, *COMMON, "model.dtype=bfloat16", "trainer.precision=bf16-mixed", "trainer.max_steps=3"],
        tmp_path,
    )
    train(cfg)
    start, end = start_and_end_weights(cfg, tmp_path)
    assert all(t.dtype == torch.float32 for t in end.values())
    # At lr 5e-6 a bf16 weight of ~0.02 (spacing ~1e-4) keeps its value: before the fix 7.6% changed.
    assert changed_fraction(start, end) > 0.99


def test_bf16_true_full_fine_tuning_warns_in_one_line_that_updates_round_away(tmp_path, tiny_overrides, caplog):
    from chipadapt.pipeline import train

    cfg = compose([*tiny_overrides, *COMMON, "trainer.precision=bf16-true", "trainer.max_steps=1"], tmp_path)
    with caplog.at_level(logging.WARNING):
        train(cfg)
    warnings = [r.getMessage() for r in caplog.records if "round" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "trainer.precision=bf16-true" in warnings[0] and "bf16-mixed" in warnings[0] and "\n" not in warnings[0]


def test_float32_training_does_not_warn(tmp_path, tiny_overrides, caplog):
    from chipadapt.pipeline import train

    with caplog.at_level(logging.WARNING):
        train(compose([*tiny_overrides, *COMMON, "trainer.max_steps=1"], tmp_path))
    assert not [r for r in caplog.records if "round" in r.getMessage()]


def test_validation_under_bf16_true_adds_up_in_float32(tmp_path, tiny_overrides):
    """bf16 metric states made perplexities exact bf16 numbers (458.000 -> 444.000) and read the same
    start model differently from run to run."""
    from chipadapt.pipeline import train

    cfg = compose(
        [*tiny_overrides, *COMMON, "stage.validate_before=true", "trainer.precision=bf16-true", "trainer.max_steps=1"],
        tmp_path,
    )
    metrics = train(cfg)
    for when in ("before", "after"):
        for split, values in metrics[when].items():
            ppl = values["ppl"]
            assert torch.tensor(ppl).bfloat16().item() != pytest.approx(ppl, rel=1e-6, abs=0), (when, split, ppl)
            assert values["loss"] == pytest.approx(torch.tensor(ppl).log().item(), rel=1e-6)


def test_lora_on_a_bfloat16_base_trains_float32_adapters_with_float32_optimizer_state(
    tmp_path, tiny_overrides, monkeypatch
):
    from chipadapt.modules.causal_lm import CausalLMModule
    from chipadapt.pipeline import train

    seen = {}

    def record(self):
        seen["params"] = {n: (p.dtype, p.requires_grad) for n, p in self.model.named_parameters()}
        optimizer = self.trainer.optimizers[0]
        seen["state"] = {v.dtype for s in optimizer.state.values() for k, v in s.items() if k != "step"}

    monkeypatch.setattr(CausalLMModule, "on_train_end", record, raising=False)
    cfg = compose(
        [
            *tiny_overrides,
            *COMMON,
            "model.dtype=bfloat16",
            "trainer.precision=bf16-mixed",
            "peft=lora_small",
            "peft.r=4",
            "trainer.max_steps=2",
        ],
        tmp_path,
    )
    train(cfg)
    trainable = {n: d for n, (d, grad) in seen["params"].items() if grad}
    frozen = {n: d for n, (d, grad) in seen["params"].items() if not grad}
    assert trainable and all(d == torch.float32 for d in trainable.values()), trainable
    assert frozen and all(d == torch.bfloat16 for d in frozen.values())  # the frozen base stays small
    assert seen["state"] == {torch.float32}


@pytest.mark.integration
def test_lora_checkpoints_hold_the_adapters_only_and_resume_exactly(tmp_path, tiny_overrides):
    """The frozen base was in every checkpoint (153,920 values beside 14,336 LoRA values on tiny):
    ~140 GB a save at 70B. Resume loads the base from the model folder and the adapters from the checkpoint."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    from helpers.fault_jobs import run_here

    from chipadapt.pipeline import train

    common = [
        *tiny_overrides,
        "peft=lora_small",
        "peft.r=4",
        "optim.lr=1e-2",
        "trainer.max_steps=4",
        "callbacks.checkpoint.every_n_train_steps=2",
        "stage.validate_before=false",
    ]
    env_path = f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    killed = subprocess.run(  # the kill is what needs a process: the step-2 checkpoint is all the rerun has
        [
            sys.executable,
            str(ROOT / "train.py"),
            *common,
            "+callbacks.killer._target_=helpers.kill.KillAtStep",
            "+callbacks.killer.step=3",
            f"hydra.run.dir={tmp_path / 'cut'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONPATH": env_path},
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 2
    assert state["state_dict"] and all("lora_" in name for name in state["state_dict"]), list(state["state_dict"])
    run_here("train", common, tmp_path / "cut")  # the rerun resumes from step 2, in this process, as train.py runs it
    train(compose(common, tmp_path / "whole"))  # the uninterrupted run
    from safetensors.torch import load_file

    one, two = (load_file(str(tmp_path / run / "model" / "model.safetensors")) for run in ("whole", "cut"))
    for name in one:
        assert torch.equal(one[name], two[name]), name


def test_adapter_only_checkpoints_refuse_a_base_that_changed_since(tmp_path):
    """The checkpoint leaves the frozen base out, so resume would put the adapters on whatever the
    folder holds now (a DAPT run trained on in place meanwhile): refused by content fingerprint."""
    import json
    import shutil

    from helpers.models import tiny_llama
    from omegaconf import OmegaConf

    from chipadapt.errors import ChipadaptError
    from chipadapt.manifest import fingerprint_input
    from chipadapt.modules.causal_lm import CausalLMModule

    base = tmp_path / "base"
    shutil.copytree(tiny_llama(tmp_path / "cache"), base)
    peft = OmegaConf.create(
        {
            "r": 4,
            "lora_alpha": 8,
            "lora_dropout": 0.0,
            "target_modules": ["q_proj", "v_proj"],
            "train_new_token_rows": True,
        }
    )
    module = CausalLMModule(base, "float32", "sdpa", False, OmegaConf.create({}), peft=peft)
    recorded = fingerprint_input(base)["fingerprint"]
    checkpoint = {"frozen_weights_left_out": True, "frozen_weights_fingerprint": recorded, "state_dict": {}}
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "note": "trained on"}))
    with pytest.raises(ChipadaptError, match=r"has changed since the checkpoint's LoRA adapters were trained"):
        module.on_load_checkpoint(checkpoint)
