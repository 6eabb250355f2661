"""A merge job run in-process: the tiny model and a perturbed copy of it, and merge.py's config for a job."""

from pathlib import Path

from conftest import CONF, compose
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from helpers.models import perturbed_copy


def tiny_pair(tmp_path: Path) -> tuple[Path, Path]:
    """(chip, instruct): the tiny model as `instruct` and a perturbed copy as `chip`."""
    from chipadapt.models.hf_folder import resolve_model_folder

    instruct = resolve_model_folder(compose(["model=tiny"], tmp_path / "unused").model)
    return perturbed_copy(instruct, tmp_path / "chip"), instruct


def merge_cfg(chip, instruct, run_dir: Path, *extra: str):
    """merge.py's config for a job in `run_dir`, merging into `run_dir/model` (its default)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(
            "merge",
            overrides=[
                f"models.chip={chip}",
                f"models.instruct={instruct}",
                f"paths.output_dir={run_dir}",
                f"output={run_dir / 'model'}",
                *extra,
            ],
        )
