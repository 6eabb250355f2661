"""FSDP's rank-0 loading (`trainer.strategy.load_on_rank0`): global rank 0 alone reads the weights.

Every other process builds the same architecture on the meta device, with no storage at all. As
FSDP wraps the model, one decoder layer at a time, it gives those ranks uninitialised storage on
their GPU for that layer (`param_init_fn`: `EmptyStorage`) and broadcasts rank 0's parameters and
buffers into it (`sync_module_states`) before sharding. A node then holds the float32 model once in
host memory (280 GB at 70B), not once per process (2.2 TB on 8 GPUs). Accelerate calls this
`fsdp_cpu_ram_efficient_loading`.

The module builds its model before the Trainer exists, so which process is rank 0 is read from what
its launcher set, by the rule that names rank 0 everywhere (io/launch_ranks, in Lightning's order); the
strategy checks the result once the process group is up (`LoadOnRank0`)."""

import weakref

import torch
from omegaconf import DictConfig
from torch import nn

from chipadapt.errors import ChipadaptError
from chipadapt.io.launch_ranks import launched_as_global_zero


def reads_weights(trainer: DictConfig) -> bool:
    """Whether this process reads the model's weights from its folder: every process does, except
    under a strategy with `load_on_rank0` true (trainer=fsdp), where global rank 0 alone does."""
    strategy = trainer.get("strategy")
    if not isinstance(strategy, DictConfig) or not strategy.get("load_on_rank0"):
        return True
    return launched_as_global_zero()


class EmptyStorage:
    """FSDP's `param_init_fn` for a model built on the meta device: uninitialised storage on `device`
    for each of a module's own parameters and buffers, which `sync_module_states` then overwrites
    with rank 0's. Unlike `module.to_empty(recurse=False)`, a tensor two modules share (a tied
    lm_head and input embedding) keeps one storage: split in two, this rank's flat parameter would
    have more elements than rank 0's and the broadcast would not fit."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        # id(meta tensor) -> (the meta tensor, kept so that its id is not reused; a weak reference to
        # its storage, so that nothing here keeps a layer's unsharded weights alive once FSDP has
        # flattened and sharded them).
        self.made: dict[int, tuple[torch.Tensor, weakref.ref]] = {}

    def __call__(self, module: nn.Module) -> None:
        for registry in (module._parameters, module._buffers):
            for name, tensor in list(registry.items()):
                if tensor is not None and tensor.is_meta:
                    registry[name] = self.storage_for(tensor)

    def storage_for(self, meta: torch.Tensor) -> torch.Tensor:
        known = self.made.get(id(meta))
        made = known[1]() if known else None
        if made is None:
            made = torch.empty_like(meta, device=self.device)
            if isinstance(meta, nn.Parameter):
                made = nn.Parameter(made, requires_grad=meta.requires_grad)
            self.made[id(meta)] = (meta, weakref.ref(made))
        return made


def has_meta_tensors(model: nn.Module) -> bool:
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))


class LoadOnRank0:
    """For Lightning's FSDPStrategy: with `load_on_rank0`, FSDP is given the `param_init_fn` and
    `sync_module_states` that fill the other ranks' meta-device models from rank 0's as it wraps."""

    def __init__(self, *args, load_on_rank0: bool, **kwargs):  # trainer/fsdp.yaml's default
        super().__init__(*args, **kwargs)
        self.load_on_rank0 = load_on_rank0

    def _setup_model(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrapped = any(isinstance(m, FullyShardedDataParallel) for m in model.modules())
        if self.load_on_rank0 and not wrapped:  # wrapped: by the module (configure_model) or another Trainer
            require_weights_on_rank0(model, self.global_rank, self.broadcast)
            self.kwargs.update(sync_module_states=True, param_init_fn=EmptyStorage(self.root_device))
        return super()._setup_model(model)


def require_weights_on_rank0(model: nn.Module, global_rank: int, broadcast) -> None:
    """Every rank stops, with one line, when rank 0 built its model without weights (its launcher's
    variables said otherwise, or a cluster environment of the user's own): its uninitialised storage
    would be broadcast as the starting model. Collective: `broadcast` is the strategy's."""
    ready = broadcast(not has_meta_tensors(model) if global_rank == 0 else None)
    if not ready:
        raise ChipadaptError(
            "trainer.strategy.load_on_rank0: the process that became global rank 0 built its model without "
            "weights (when the model was built, RANK, SLURM_PROCID or LOCAL_RANK/NODE_RANK named another rank); "
            "set trainer.strategy.load_on_rank0=false to read the weights in every process"
        )
