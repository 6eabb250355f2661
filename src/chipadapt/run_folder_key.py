"""The config key that names the folder a job runs in: what a message tells the user to reuse or change."""


def run_folder_key() -> str:
    """`hydra.sweep.dir` in a sweep (its jobs' folders are `<sweep dir>/<n>`, which no override names),
    else `hydra.run.dir`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return "hydra.sweep.dir"
    return "hydra.run.dir"
