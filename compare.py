"""Compare many evaluation results in one table and plot:

  python compare.py 'runs=[multirun/2026-11-23/10-00-00/*]' 'metrics=[ifeval.prompt_loose,perplexity.domain.bpb]'
"""

import hydra
from omegaconf import DictConfig

import chipadapt  # noqa: F401  (registers the config resolvers)
from chipadapt.errors import exit_on_user_error
from chipadapt.eval.compare import compare


@hydra.main(version_base="1.3", config_path="conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(compare, cfg)


if __name__ == "__main__":
    main()
