"""Merge two Hugging Face folders (ChipAlign or a baseline), sweepable like training:

  python merge.py merge=chipalign merge.lam=0.6 models.chip=DAPT_FOLDER models.instruct=INSTRUCT_FOLDER output=OUT
  python merge.py -m merge.lam=0,0.2,0.4,0.6,0.8,1 models.chip=... models.instruct=...
"""

import hydra
from omegaconf import DictConfig

import chipadapt  # noqa: F401  (registers the config resolvers)
from chipadapt.errors import exit_on_user_error
from chipadapt.merge.run import run


@hydra.main(version_base="1.3", config_path="conf", config_name="merge")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(run, cfg)


if __name__ == "__main__":
    main()
