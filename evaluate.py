"""Evaluate one model folder on the tasks chosen by `eval=[...]`:

  python evaluate.py model.path=FOLDER eval=[perplexity,mcq,ifeval] hydra.run.dir=DIR   # DIR/results.json
"""

import hydra
from omegaconf import DictConfig

import chipadapt  # noqa: F401  (registers the config resolvers)
from chipadapt.errors import exit_on_user_error
from chipadapt.eval.run import run


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(run, cfg)


if __name__ == "__main__":
    main()
