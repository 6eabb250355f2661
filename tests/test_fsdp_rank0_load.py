"""FSDP's rank-0 loading (trainer.strategy.load_on_rank0): rank 0 alone reads the weights, the other
ranks build the model on the meta device, and FSDP fills their shards from rank 0's as it wraps."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.distributed.fsdp as fsdp
from conftest import compose
from helpers.cpu_fsdp import allow_fsdp_on_cpu, fork_two_ranks
from helpers.launch_env import launched_with
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import LightningEnvironment
from omegaconf import OmegaConf
from torch.distributed.fsdp import FullStateDictConfig, StateDictType
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from chipadapt.errors import ChipadaptError
from chipadapt.models.hf_folder import empty_causal_lm, load_causal_lm
from chipadapt.scaleout.rank0_load import EmptyStorage, launched_as_global_zero, reads_weights
from chipadapt.scaleout.whole_checkpoints import WholeCheckpointFSDP


@pytest.fixture
def launched_as(monkeypatch):
    """Sets the variables a launcher gives a process, and none other."""

    return lambda **variables: launched_with(monkeypatch, **variables)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny test model (2 decoder layers, tied embeddings), its weights removable by a test."""
    from helpers.models import tiny_model_copy

    return tiny_model_copy(tmp_path_factory.mktemp("rank0"))


@pytest.mark.parametrize(
    "variables, zero",
    [
        ({}, True),  # Lightning's launcher: the process started by the user
        ({"LOCAL_RANK": "1"}, False),  # ... and the ones it starts, the script rerun
        ({"LOCAL_RANK": "0", "NODE_RANK": "1", "WORLD_SIZE": "2"}, False),  # the first process of another node
        ({"NODE_RANK": "1"}, True),  # a lone process on a node of a multi-node allocation
        ({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "8", "RANK": "3", "LOCAL_RANK": "0"}, False),  # torchrun, node 2
        ({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "8", "RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"SLURM_NTASKS": "16", "SLURM_PROCID": "8", "SLURM_JOB_NAME": "dapt"}, False),  # srun
        ({"SLURM_NTASKS": "16", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "dapt"}, True),
        # An interactive SLURM shell: Lightning's launcher starts the processes, SLURM_PROCID is 0 in all.
        ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "bash", "LOCAL_RANK": "1"}, False),
    ],
)
def test_the_global_rank_0_process_is_known_from_its_launchers_variables(launched_as, variables, zero):
    launched_as(**variables)
    assert launched_as_global_zero() is zero


def test_only_load_on_rank0_lets_a_process_skip_the_weights(launched_as, tmp_path):
    launched_as(LOCAL_RANK="1")
    fsdp = compose(["trainer=fsdp"], tmp_path).trainer
    assert fsdp.strategy.load_on_rank0 is True  # the default of trainer=fsdp
    assert not reads_weights(fsdp)
    assert reads_weights(compose(["trainer=fsdp", "trainer.strategy.load_on_rank0=false"], tmp_path).trainer)
    assert reads_weights(compose(["trainer=ddp"], tmp_path).trainer)
    launched_as()
    assert reads_weights(fsdp)


def test_load_on_rank0_is_true_or_false_before_any_work(tmp_path):
    from chipadapt.config_schema import validate

    cfg = compose(["trainer=fsdp", "trainer.strategy.load_on_rank0=off"], tmp_path)
    validate(cfg)
    assert cfg.trainer.strategy.load_on_rank0 is False  # not the string "off", which is true
    with pytest.raises(ChipadaptError, match=r"^trainer.strategy.load_on_rank0: Value 'maybe' is not a valid bool"):
        validate(compose(["trainer=fsdp", "trainer.strategy.load_on_rank0=maybe"], tmp_path))


def causal_lm_module(folder: Path, tmp_path: Path, overrides: list[str]):
    cfg = compose(["model=tiny", *overrides], tmp_path)
    return instantiate(cfg.stage.module)(
        model_folder=folder, val_split_names=[], read_weights=reads_weights(cfg.trainer)
    )


def test_a_rank_other_than_0_builds_the_model_without_reading_a_weight(launched_as, tiny, tmp_path):
    import shutil

    launched_as()
    rank0 = causal_lm_module(tiny, tmp_path, ["trainer=fsdp"])
    assert not any(t.is_meta for t in (*rank0.parameters(), *rank0.buffers()))
    assert all(torch.equal(a, b) for a, b in zip(rank0.model.state_dict().values(), weights(tiny).values()))

    # Rank 1 from a folder without weights: one read would fail.
    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny, no_weights, ignore=shutil.ignore_patterns("*.safetensors*"))
    launched_as(LOCAL_RANK="1")
    other = causal_lm_module(no_weights, tmp_path, ["trainer=fsdp"])
    assert all(t.is_meta for t in (*other.model.parameters(), *other.model.buffers()))
    # The same architecture: names, shapes and dtypes of everything FSDP flattens and broadcasts.
    assert describe(other.model) == describe(rank0.model)
    assert other.model.lm_head.weight is other.model.model.embed_tokens.weight  # tied, as on rank 0
    assert other.model.training and torch.equal(other.token_bytes, rank0.token_bytes)

    # With the key false every process reads the weights, as before.
    with pytest.raises(Exception, match="no safetensors weights"):
        causal_lm_module(no_weights, tmp_path, ["trainer=fsdp", "trainer.strategy.load_on_rank0=false"])
    every = causal_lm_module(tiny, tmp_path, ["trainer=fsdp", "trainer.strategy.load_on_rank0=false"])
    assert all(torch.equal(a, b) for a, b in zip(every.model.state_dict().values(), weights(tiny).values()))


def test_lora_builds_base_and_adapters_without_weights_on_a_rank_other_than_0(launched_as, tiny, tmp_path):
    # FSDP gives them rank 0's values, adapters included (tests/test_fsdp_lora.py trains so).
    launched_as(LOCAL_RANK="1")
    module = causal_lm_module(tiny, tmp_path, ["trainer=fsdp", "peft=lora_small"])
    assert all(t.is_meta for t in module.model.parameters())
    assert any("lora_A" in name for name, _ in module.model.named_parameters())


def describe(model: torch.nn.Module) -> list:
    state = {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers())}
    return sorted((name, tuple(t.shape), t.dtype) for name, t in state.items())


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's weights as the model holds them (the tied lm_head included), and its buffers."""
    model = load_causal_lm(folder, "float32", "sdpa")
    return {**model.state_dict(), **{f"buffer:{n}": b for n, b in model.named_buffers()}}


def test_empty_storage_keeps_a_tied_weight_one_tensor():
    embed, head = torch.nn.Embedding(8, 4, device="meta"), torch.nn.Linear(4, 8, bias=False, device="meta")
    head.weight = embed.weight
    materialize = EmptyStorage(torch.device("cpu"))
    materialize(embed)
    materialize(head)
    assert not embed.weight.is_meta and head.weight is embed.weight
    # to_empty, module by module, would have split it: two tensors on this rank, one on rank 0.
    embed2, head2 = torch.nn.Embedding(8, 4, device="meta"), torch.nn.Linear(4, 8, bias=False, device="meta")
    head2.weight = embed2.weight
    embed2.to_empty(device="cpu", recurse=False)
    head2.to_empty(device="cpu", recurse=False)
    assert head2.weight is not embed2.weight


def wrap_on_two_ranks(rank: int, port: int, folder: str, results: str) -> None:
    """One of two gloo ranks started as Lightning's launcher starts them (LOCAL_RANK): with the key on
    and off, the model built as CausalLMModule builds it and wrapped by our strategy's own
    `_setup_model`, FSDP on the CPU; what each rank then holds is saved to `results`."""
    allow_fsdp_on_cpu()  # materializing, broadcasting and sharding are torch's own
    FSDP = fsdp.FullyShardedDataParallel
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    environment = LightningEnvironment()
    environment.set_global_rank(rank)
    environment.set_world_size(2)

    def strategy(load_on_rank0: bool) -> WholeCheckpointFSDP:
        return WholeCheckpointFSDP(
            auto_wrap_policy={LlamaDecoderLayer},
            load_on_rank0=load_on_rank0,
            cluster_environment=environment,
            parallel_devices=[torch.device("cpu")] * 2,
        )

    try:
        for load_on_rank0 in (True, False):
            read = reads_weights(OmegaConf.create({"strategy": {"load_on_rank0": load_on_rank0}}))
            model = (load_causal_lm if read else empty_causal_lm)(Path(folder), "float32", "sdpa")
            wrapping = strategy(load_on_rank0)
            wrapped = wrapping._setup_model(model)
            units = sum(isinstance(m, FSDP) for m in wrapped.modules())
            full = FullStateDictConfig(offload_to_cpu=False, rank0_only=False)
            with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, full):
                state = {k.replace("_fsdp_wrapped_module.", ""): v.clone() for k, v in wrapped.state_dict().items()}
            buffers = {f"buffer:{n.replace('_fsdp_wrapped_module.', '')}": b for n, b in wrapped.named_buffers()}
            sync = wrapping.kwargs.get("sync_module_states", False)
            record = {"read": read, "units": units, "sync": sync, **state, **buffers}
            torch.save(record, Path(results) / f"{load_on_rank0}-{rank}.pt")
        # Rank 0 too built its model on the meta device (a launcher whose variables were misread).
        try:
            strategy(True)._setup_model(empty_causal_lm(Path(folder), "float32", "sdpa"))
            refused = "wrapped"
        except ChipadaptError as err:
            refused = str(err)
        (Path(results) / f"refused-{rank}.txt").write_text(refused)
    finally:
        dist.destroy_process_group()


def test_fsdp_gives_every_rank_the_folders_weights_and_buffers(tiny, tmp_path):
    fork_two_ranks(wrap_on_two_ranks, str(tiny), str(tmp_path))
    expected = weights(tiny)
    for load_on_rank0 in (True, False):
        for rank in (0, 1):
            got = torch.load(tmp_path / f"{load_on_rank0}-{rank}.pt")
            read, sync, units = got.pop("read"), got.pop("sync"), got.pop("units")
            assert sorted(got) == sorted(expected), (load_on_rank0, rank)
            for name, tensor in expected.items():
                assert torch.equal(got[name], tensor), (load_on_rank0, rank, name)
            # With the key on rank 1 read nothing; with it off every rank read the folder (today's path).
            assert read is (rank == 0 or not load_on_rank0) and sync is load_on_rank0
            assert units == 3  # the two decoder layers and the root: the model was sharded
    for rank in (0, 1):  # rank 0 without weights: every rank stops, none broadcasts uninitialised memory
        refused = (tmp_path / f"refused-{rank}.txt").read_text()
        assert refused.startswith("trainer.strategy.load_on_rank0: the process that became global rank 0 built")
