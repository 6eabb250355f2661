"""`python -m chipadapt.data.curate [data/curate=NAME] [overrides]`: curate a folder of files into
corpus JSONL shards (see chipadapt.curation.run). Configs live in conf/data/curate/."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

import chipadapt  # noqa: F401  (registers the config resolvers)
from chipadapt.errors import exit_on_user_error

CONF = str(Path(__file__).resolve().parents[3] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="curate")
def main(cfg: DictConfig) -> None:
    from chipadapt.curation.run import curate

    exit_on_user_error(curate, cfg.data.curate, Path(cfg.paths.output_dir))


if __name__ == "__main__":
    main()
