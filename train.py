"""Train one stage (chosen by `stage=`) from the Hydra config tree in conf/.

  python train.py experiment=quickstart
  python train.py -m model=tiny optim.lr=1e-4,5e-6 data.seq_len=64,128
"""

import hydra
from omegaconf import DictConfig

import chipadapt  # noqa: F401  (registers the config resolvers)
from chipadapt.errors import exit_on_user_error
from chipadapt.pipeline import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(train, cfg)


if __name__ == "__main__":
    main()
