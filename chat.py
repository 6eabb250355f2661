"""Chat with a model folder in the terminal (streaming; optional retrieval and SteerLM attributes):

  python chat.py model.path=RUN/model
  python chat.py model.path=STEERLM_RUN/model generate.attributes=quality:4,humor:0 data/template=chipnemo
  python chat.py model.path=RUN/model retrieval=openroad +retrieval.encoders.minilm.path=RETRIEVER_RUN/model
"""

import hydra
from omegaconf import DictConfig

import chipadapt  # noqa: F401  (registers the config resolvers)
from chipadapt.chat import run
from chipadapt.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="chat")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(run, cfg)


if __name__ == "__main__":
    main()
