"""Silence third-party messages that say nothing about the user's run (advertising, deprecations
inside Lightning itself), so that the warnings that remain are worth reading."""

import logging
import re
import sys
import warnings

_NOISE = (
    "try installing [litlogger]",
    "isinstance(treespec, LeafSpec)",
    "does not have many workers which may be a bottleneck",
    # Lightning cannot see that our ResumeSampler continues the data stream after a checkpoint.
    "your dataloader is not resumable",
    # The loss-spike guard skips a step on purpose by returning None from training_step.
    "`training_step` returned `None`",
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in _NOISE)


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def silence_known_noise() -> None:
    for fragment in _NOISE:
        warnings.filterwarnings("ignore", message=f".*{re.escape(fragment)}.*")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropNoise())
    # Retrieval libraries log their loading steps (faiss's CPU-feature probing, bm25s's index
    # building, sentence-transformers' saving) at INFO/DEBUG; our own log says what happened.
    # A filter, not only a level: bm25s sets its logger to DEBUG when it is imported, which is often
    # after this call (it is imported only when a retriever is built).
    for name in ("faiss.loader", "bm25s", "sentence_transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).addFilter(_warnings_only)
    # transformers' per-tensor "Loading weights" / "Writing model shards" bars on every load and save.
    # Not imported here for it (2 CPU-s of every refused command): transformers takes the hub's setting
    # when it is imported (transformers.utils.logging._tqdm_active), so the hub's switch is enough then.
    try:
        if "transformers.utils.logging" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        else:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
    except ImportError:
        pass
