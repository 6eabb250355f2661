"""An entry point's job config composed in this process as its command composes it, with Hydra's config of the
job set while it runs (trackers read the job's kind and name from it, the manifest its overrides) and the
output folder chosen by the test. A fresh `python train.py/evaluate.py/merge.py` spends seconds importing
before its job starts: tests whose claim is not the command line's own contract (exit status, one error line,
signals) run the job here."""

import contextlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def entry_job(config_name: str, overrides: list[str], output_dir):
    """Yields the job's config; Hydra's job config, W&B's service and the environment are put back after."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import chipadapt  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3", job_name=config_name):
        cfg = hydra_compose(
            config_name, overrides=[*overrides, f"hydra.run.dir={output_dir}"], return_hydra_config=True
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)  # what Hydra's run_job sets
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    environment = dict(os.environ)
    try:
        yield cfg
    finally:
        HydraConfig.instance().cfg = None
        # wandb.init points WANDB_SERVICE at a service this process owns: a later command started by the test
        # inherited it and logged through this process's service, not its own, as the real command does.
        if "wandb" in sys.modules:
            sys.modules["wandb"].teardown()
        os.environ.clear()
        os.environ.update(environment)
