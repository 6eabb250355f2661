"""Reproduce ChipNeMo's and ChipAlign's findings at small scale, end to end, into one report:

  python reproduce.py                   # full variant (a few hours on 2 CPU cores)
  python reproduce.py variant=fast      # under 20 minutes
  python reproduce.py only=[report]     # rebuild experiments/reports/<date>/REPORT.md from the run folders
"""

import hydra
from omegaconf import DictConfig

import chipadapt  # noqa: F401  (registers the config resolvers)
from chipadapt.errors import exit_on_user_error
from chipadapt.reproduce.run import run


@hydra.main(version_base="1.3", config_path="conf", config_name="reproduce")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(run, cfg)


if __name__ == "__main__":
    main()
