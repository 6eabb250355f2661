"""Scale-out: DDP gradients, kill-and-resume curves, loss-spike guard, LoRA, strategy configs, plans."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONF, ROOT, compose
from helpers.ddp_runs import one_here_and_two_processes


def losses(run_dir) -> dict[int, float]:
    with open(run_dir / "metrics.csv") as handle:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")}


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.integration
def test_two_process_ddp_updates_the_model_as_one_process_on_the_same_global_batch(tmp_path, tiny_overrides):
    common = [
        *tiny_overrides,
        "data.global_batch_size=4",
        "data.micro_batch_size=2",
        "trainer.max_steps=3",
        "stage.validate_before=false",
        "optim.lr=1e-3",
        "callbacks.checkpoint=null",
        "loss_guard.enabled=false",
    ]
    one_here_and_two_processes(common, tmp_path)
    plan = json.loads((tmp_path / "two" / "manifest.json").read_text())["plan"]["text"]
    assert "micro 2 x 2 processes x 1 accumulation" in plan
    one, two = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    for name in one:
        assert torch.allclose(one[name], two[name], atol=2e-5), name  # same gradients -> same updates


@pytest.mark.integration
def test_a_killed_run_resumes_with_the_loss_curve_of_an_uninterrupted_one(tmp_path, tiny_overrides):
    common = [
        *tiny_overrides,
        "trainer.max_steps=8",
        "callbacks.checkpoint.every_n_train_steps=2",
        "stage.validate_before=false",
    ]
    from chipadapt.pipeline import train

    # Only the killed run needs a process of its own (SIGKILL: no clean shutdown, no final save); the
    # uninterrupted run and the resume are train.py's job in this process, on the same composed config.
    train(compose(common, tmp_path / "whole"))
    env_path = f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    killed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *common,
            "+callbacks.killer._target_=helpers.kill.KillAtStep",
            "+callbacks.killer.step=5",
            f"hydra.run.dir={tmp_path / 'cut'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONPATH": env_path},
    )
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL: no clean shutdown, no final save
    assert not (tmp_path / "cut" / "model").exists() and (tmp_path / "cut" / "checkpoints" / "last.ckpt").is_file()
    resumed = train(compose(common, tmp_path / "cut"))  # the rerun in the same folder resumes from the checkpoint
    assert resumed["global_step"] == 8
    reference, cut = losses(tmp_path / "whole"), losses(tmp_path / "cut")
    assert sorted(reference) == sorted(cut) == list(range(8))
    for step in range(8):
        assert cut[step] == pytest.approx(reference[step], rel=1e-5), step


def test_loss_guard_skips_non_finite_and_spiking_losses_only():
    from chipadapt.modules.loss_guard import LossSpikeGuard

    guard = LossSpikeGuard(enabled=True, max_ratio=3.0, window=4, warmup_steps=3)
    decisions = [guard.admit(x) for x in [2.0, float("nan"), 2.1, 1.9, 50.0, 2.0, float("inf"), 5.9]]
    assert decisions == [True, False, True, True, False, True, False, True]
    assert guard.skipped == 3
    restored = LossSpikeGuard(True, 3.0, 4, 3)
    restored.load_state_dict(guard.state_dict())
    assert restored.skipped == 3 and not restored.admit(100.0)
    assert LossSpikeGuard(False, 3.0, 4, 0).admit(float("nan"))


def test_training_skips_a_batch_whose_loss_spikes(tmp_path, tiny_overrides, monkeypatch):
    from chipadapt.modules.causal_lm import CausalLMModule
    from chipadapt.pipeline import train

    calls = {"n": 0}
    original = CausalLMModule.forward

    def spiking(self, batch):
        out = original(self, batch)
        calls["n"] += 1
        if calls["n"] == 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(CausalLMModule, "forward", spiking)
    result = train(
        compose(
            [*tiny_overrides, "trainer.max_steps=4", "stage.validate_before=false", "callbacks.checkpoint=null"],
            tmp_path,
        )
    )
    assert result["global_step"] == 4
    with open(tmp_path / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert any(r.get("train/skipped_steps") == "1.0" for r in rows)
    assert all(r["train/loss"] in ("", None) or r["train/loss"] != "nan" for r in rows)


@pytest.mark.integration
def test_lora_trains_adapters_and_saves_a_merged_plain_folder(tmp_path, tiny_overrides, caplog):
    from chipadapt.pipeline import train

    caplog.set_level("INFO", logger="chipadapt.models.lora")  # what train.log holds of it in a train.py run
    out = tmp_path / "lora"
    overrides = [*tiny_overrides, "peft=lora_small", "peft.r=4", "trainer.max_steps=2", "optim.lr=1e-2"]
    train(compose([*overrides, "stage.validate_before=false"], out))
    assert "LoRA r=4" in caplog.text and (out / "adapter" / "adapter_config.json").is_file()
    merged = weights(out / "model")
    assert not any("lora" in name for name in merged)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "model")  # a plain HF folder
    assert model.config.model_type == "llama"


def test_fsdp_and_deepspeed_configs_compose_and_build_without_a_gpu(tmp_path):
    from hydra.utils import instantiate

    fsdp = compose(["trainer=fsdp"], tmp_path)
    assert fsdp.trainer.strategy.sharding_strategy == "FULL_SHARD" and fsdp.trainer.precision == "bf16-mixed"
    strategy = instantiate(fsdp.trainer.strategy)
    from lightning.pytorch.strategies import FSDPStrategy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    assert isinstance(strategy, FSDPStrategy) and strategy.sharding_strategy.name == "FULL_SHARD"
    assert (
        LlamaDecoderLayer in strategy.kwargs["auto_wrap_policy"]._module_classes
    )  # each decoder layer its own shard unit
    assert LlamaDecoderLayer in strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes
    with pytest.raises(Exception, match="'NopeDecoderLayer' is not a transformers decoder layer"):  # hydra wraps it
        instantiate(
            compose(["trainer=fsdp", "trainer.strategy.layer_classes=[NopeDecoderLayer]"], tmp_path).trainer.strategy
        )
    for stage in (2, 3):
        cfg = compose([f"trainer=deepspeed_zero{stage}"], tmp_path)
        assert cfg.trainer.strategy.stage == stage
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            with pytest.raises(Exception, match="DeepSpeed is not installed"):
                instantiate(cfg.trainer.strategy)


def test_chipnemo_experiments_print_the_papers_plan(tmp_path):
    from chipadapt.batch_plan import batch_plan, describe_plan

    cfg = compose(
        ["experiment=chipnemo_7b", "model.path=/models/llama-2-7b", "trainer.devices=8", "trainer.num_nodes=4"],
        tmp_path,
    )
    assert (cfg.data.seq_len, cfg.data.global_batch_size, cfg.optim.lr, cfg.trainer.max_steps) == (
        4096,
        256,
        5e-6,
        23200,
    )
    assert cfg.optim.scheduler is None and cfg.model.attn_implementation == "auto"
    plan = batch_plan(cfg.data, cfg.trainer)
    assert (plan.world_size, plan.micro_batch, plan.accumulation) == (32, 1, 8)
    text = describe_plan(plan, 23200, cfg.plan.tokens_per_s_per_gpu, cfg.plan.gpu)
    assert "23,200 steps = 24.327B tokens" in text
    gpu_hours = 23200 * 256 * 4096 / cfg.plan.tokens_per_s_per_gpu / 3600
    assert f"{gpu_hours:,.1f} GPU-hours" in text and f"{gpu_hours / 32:,.1f} h on 32 GPU(s)" in text


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import chipadapt  # noqa: F401  (the launcher's resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(
            "train",
            overrides=["experiment=chipnemo_13b", "model.path=/m", "hydra/launcher=slurm", "trainer.num_nodes=4"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.tasks_per_node == launcher.gpus_per_node == 8


def test_attention_auto_falls_back_to_sdpa_without_flash_attn():
    from chipadapt.models.hf_folder import resolve_attention

    expected = (
        "flash_attention_2"
        if torch.cuda.is_available() and __import__("importlib").util.find_spec("flash_attn")
        else "sdpa"
    )
    assert resolve_attention("auto") == expected and resolve_attention("eager") == "eager"


def test_lora_with_an_augmented_tokenizer_trains_the_new_token_rows_only(tmp_path, tiny_overrides, caplog):
    from chipadapt.pipeline import train

    caplog.set_level("INFO", logger="chipadapt.models.lora")
    overrides = [
        *tiny_overrides,
        "tokenizer=augmented",
        "tokenizer.adapt.min_savings=2",
        "tokenizer.adapt.domain_vocab_size=1000",
        # The new rows' initial fits and the starting-bpb table are tested elsewhere; here they only cost time.
        "tokenizer.adapt.init.warmup=null",
        "tokenizer.adapt.init.input_fit=null",
        "tokenizer.adapt.init.fit=null",
        "tokenizer.adapt.starting_bpb=null",
        "peft=lora_small",
        "peft.r=4",
        "trainer.max_steps=3",
        "optim.lr=1e-2",
        "stage.validate_before=false",
        "callbacks.checkpoint=null",
    ]
    train(compose(overrides, tmp_path))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    report = manifest["inputs"]["tokenizer_report"]
    start_folder = manifest["inputs"]["model_folder"]
    before, after = weights(Path(start_folder)), weights(tmp_path / "model")
    old, new = report["vocab_size_before"], report["vocab_size_after"]
    emb = "model.embed_tokens.weight"
    assert torch.equal(before[emb][:old], after[emb][:old])  # the base vocabulary is frozen
    assert not torch.equal(before[emb][old:new], after[emb][old:new])  # the new rows trained
    assert "new token rows trainable" in caplog.text
