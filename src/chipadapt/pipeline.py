"""The entry behind train.py: check the output folder, then run the configured stage's recipe
(`stage.runner`, one of chipadapt/stages/) inside a recorded job whose manifest says how it ended."""

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from chipadapt.io.outputs import check_output_folder
from chipadapt.job import recorded_job
from chipadapt.quiet import silence_known_noise


def train(cfg: DictConfig) -> dict:
    silence_known_noise()  # before the output checks and the loggers start
    out = Path(cfg.paths.output_dir)
    # Before the manifest of this attempt replaces the last one: a finished model/ is replaced only
    # with overwrite=true, a model/ that train.py did not write never, nor a folder holding model.path.
    check_output_folder(
        out / "model",
        "train",
        "hydra.run.dir",
        bool(cfg.overwrite),
        [("model.path", cfg.model.path)] if cfg.model.get("path") else [],
    )
    if cfg.resume:  # before anything is built or written: a checkpoint of another run is not resumed
        from chipadapt.stages.common import resume_checkpoint

        resume_checkpoint(cfg, out)
    with recorded_job(cfg, "train", out) as manifest:  # manifest status and the W&B run end with the job
        return instantiate(cfg.stage.runner)(cfg, out, manifest)
