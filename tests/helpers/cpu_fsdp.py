"""Two gloo ranks running torch's FSDP on the CPU: the sharding, broadcasting and gathering of a GPU
run, in a test on a machine without GPUs."""


def allow_fsdp_on_cpu() -> None:
    """Lifts FSDP's two refusals of the CPU, in the process that calls it (a forked rank, never the
    test's own process). Lightning passes no device for a CPU root (torch then wants an
    accelerator), and `sync_module_states` wants GPU tensors because NCCL broadcasts only those
    (gloo broadcasts CPU tensors). Patched on the class itself, not a subclass: the units that
    auto-wrapping makes are then of the class Lightning and the strategy look for.

    And a full state dict's `offload_to_cpu` (scaleout/save.py) is made a no-op: torch copies the
    gathered parameters to the CPU, then frees the GPU storage they were gathered in; on the CPU the
    copy is that storage itself, and reading the state dict then crashes the process (SIGSEGV)."""
    import contextlib

    import torch
    import torch.distributed.fsdp as fsdp
    import torch.distributed.fsdp._flat_param as flat_param
    import torch.distributed.fsdp._init_utils as fsdp_init

    FSDP = fsdp.FullyShardedDataParallel
    init = FSDP.__init__

    def on_cpu(self, module, *args, device_id=None, **kwargs):
        init(self, module, *args, device_id=device_id or torch.device("cpu"), **kwargs)

    FSDP.__init__ = on_cpu
    fsdp_init._check_module_states_for_sync_module_states = lambda states: None
    flat_param.FlatParamHandle.to_cpu = lambda handle: contextlib.nullcontext()


def fork_two_ranks(fn, *args) -> None:
    """`fn(rank, port, *args)` in two processes. Forked, not spawned: the two start with torch,
    transformers and Lightning imported (about 8 s of imports each on a shared 2-core machine).
    Nothing in the test's process has touched a GPU or a process group before the fork."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.start_processes(fn, args=(port, *args), nprocs=2, join=True, start_method="fork")
