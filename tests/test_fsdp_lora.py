"""LoRA under FSDP (`peft=lora_small trainer=fsdp`): train.py's whole run on two gloo ranks, FSDP on the
CPU, against the same run in one process. Before scaleout/adapter_units.py a bf16 base stopped at
wrapping ("Must flatten tensors with uniform dtype"), and a float32 one trained but hung saving
(rank 0 alone gathered the shards for peft's save_pretrained)."""

import os
from pathlib import Path

import pytest
import torch
from conftest import TINY_FAST, compose
from helpers.cpu_fsdp import allow_fsdp_on_cpu, fork_two_ranks
from safetensors.torch import load_file

LORA = [*TINY_FAST, "peft=lora_small", "peft.r=4", "peft.lora_dropout=0", "optim.lr=1e-2"]
LORA += ["trainer.max_steps=2", "stage.validate_before=false"]
ON_TWO_CPU_RANKS = ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2"]
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


def train_on_two_ranks(rank: int, port: int, out: str, overrides: list[str]) -> None:
    """One of two ranks started as Lightning's launcher starts them (LOCAL_RANK), running train.py's
    pipeline with trainer=fsdp on the CPU: its refusals of the CPU lifted, and bf16-mixed computed
    under the CPU's autocast where Lightning's FSDP precision names CUDA's (a no-op on the CPU)."""
    allow_fsdp_on_cpu()
    torch.set_num_threads(1)
    from lightning.pytorch.plugins.precision.fsdp import FSDPPrecision
    from lightning.pytorch.strategies import FSDPStrategy

    import chipadapt.pipeline as pipeline
    from chipadapt.scaleout.whole_checkpoints import WholeCheckpointFSDP

    WholeCheckpointFSDP.setup_environment = FSDPStrategy.setup_environment
    pipeline.check_trainer_on_this_machine = lambda trainer: None
    gpu_context = FSDPPrecision.forward_context
    FSDPPrecision.forward_context = lambda self: (
        torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16-mixed" else gpu_context(self)
    )
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank), WORLD_SIZE="2")
    pipeline.train(compose([*LORA, *ON_TWO_CPU_RANKS, *overrides], Path(out)))


def merged(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def starting_weights(run: Path) -> dict[str, torch.Tensor]:
    import json

    folder = Path(json.loads((run / "manifest.json").read_text())["inputs"]["model_folder"])
    return load_file(folder / "model.safetensors")


def step_0_throughput(run: Path) -> list[str]:
    import csv

    with open(run / "metrics.csv") as rows:
        return [r["train/tokens_per_s"] for r in csv.DictReader(rows) if r["step"] == "0" and r["train/tokens_per_s"]]


def assert_close_weights(got: dict, expected: dict, atol: float) -> None:
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype, name
        torch.testing.assert_close(got[name].float(), tensor.float(), atol=atol, rtol=0, msg=name)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The same LoRA run in one process, float32: what the two ranks must save."""
    from chipadapt.pipeline import train

    out = tmp_path_factory.mktemp("one_process")
    train(compose(LORA, out))
    return out


def test_lora_under_fsdp_saves_the_merged_model_of_one_process(one_process, tmp_path):
    # trainer=fsdp's load_on_rank0 (its default): rank 1 builds base and adapters on the meta device.
    fork_two_ranks(train_on_two_ranks, str(tmp_path), ["trainer.precision=32-true"])
    got, expected, start = merged(tmp_path), merged(one_process), starting_weights(one_process)
    # Only the adapted projections moved (by up to ~0.07); the two ranks' merged model is the one
    # process's to float32 rounding (measured: 1.6e-6).
    moved = {n for n in expected if not torch.equal(expected[n], start[n])}
    assert moved == {n for n in expected if n.endswith(tuple(f"{p}.weight" for p in ATTENTION))}
    assert_close_weights(got, expected, atol=1e-5)
    assert not any("lora" in name for name in got)
    adapters = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert_close_weights(adapters, load_file(one_process / "adapter" / "adapter_model.safetensors"), atol=1e-5)


def test_lora_under_fsdp_trains_float32_adapters_on_a_bf16_base(tmp_path):
    """The mixed-dtype case: FSDP cannot flatten the bf16 base and float32 adapters of a decoder layer
    into one unit, so each adapter matrix is a unit of its own."""
    fork_two_ranks(train_on_two_ranks, str(tmp_path), ["model.dtype=bfloat16"])
    got, start = merged(tmp_path), starting_weights(tmp_path)
    assert {t.dtype for t in got.values()} == {torch.bfloat16}  # as one process saves it: model.dtype
    for name, tensor in got.items():
        frozen = not name.endswith(tuple(f"{p}.weight" for p in ATTENTION))
        assert torch.equal(tensor, start[name].to(torch.bfloat16)) is frozen, name
    adapters = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert {t.dtype for t in adapters.values()} == {torch.float32} and len(adapters) == 16


def test_lora_under_fsdp_resumes_from_its_sharded_checkpoint(one_process, tmp_path):
    killed = [
        "trainer.precision=32-true",
        "callbacks.checkpoint.every_n_train_steps=1",
        "+callbacks.killer._target_=helpers.kill.KillAtStep",
        "+callbacks.killer.step=2",  # before step 2's checkpoint: last.ckpt holds step 1
    ]
    with pytest.raises(Exception, match="signal"):
        fork_two_ranks(train_on_two_ranks, str(tmp_path), killed)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_dir() and not (tmp_path / "model").exists()
    first_attempt = step_0_throughput(tmp_path)
    fork_two_ranks(train_on_two_ranks, str(tmp_path), ["trainer.precision=32-true"])
    # Resumed, not started over: step 0's logged row, its measured throughput included, is the first attempt's.
    assert step_0_throughput(tmp_path) == first_attempt
    assert_close_weights(merged(tmp_path), merged(one_process), atol=1e-5)


@pytest.mark.parametrize(
    ("dtype", "new_rows", "refused"), [("bfloat16", True, True), ("bfloat16", False, False), ("float32", True, False)]
)
def test_new_token_rows_beside_a_bf16_embedding_are_refused_in_one_line(tmp_path, dtype, new_rows, refused):
    from peft import LoraConfig, get_peft_model
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    from chipadapt.errors import ChipadaptError
    from chipadapt.models.hf_folder import empty_causal_lm, resolve_model_folder
    from chipadapt.scaleout.adapter_units import refuse_mixed_dtype_units, trains_alone

    folder = resolve_model_folder(compose(["model=tiny"], tmp_path).model)
    rows = {"trainable_token_indices": {"embed_tokens": [500, 501]}} if new_rows else {}
    model = get_peft_model(empty_causal_lm(folder, dtype, "sdpa"), LoraConfig(r=4, target_modules=["q_proj"], **rows))
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()  # as models/lora.py trains them
    check = lambda: refuse_mixed_dtype_units(model, lambda m: isinstance(m, LlamaDecoderLayer) or trains_alone(m))  # noqa: E731
    if refused:
        with pytest.raises(
            ChipadaptError, match=r"^model.dtype: under trainer=fsdp .* peft.train_new_token_rows=false$"
        ):
            check()
    else:
        check()
