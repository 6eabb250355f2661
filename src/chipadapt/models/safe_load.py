"""The one way weights come off disk: safetensors only, local files only, no remote code.

A folder with only pickled weights (`pytorch_model.bin`, `*.pt`) is refused, never unpickled: a
pickle can run code. Weights that are not the model config.json describes are an error, not
transformers' load report and random tensors: a missing tensor (a damaged or hand-edited file, an
attribute model folder that is really a plain causal LM, an encoder without its weights), one of
another shape (a config.json of another size), and for causal LMs one the model would drop. A
tokenizer with ids past the embedding's rows, or no tokenizer at all, is refused when it loads.
Whatever else goes wrong while reading (a truncated file, a damaged header) is one line naming the
folder and the config key."""

import logging
import re
from pathlib import Path
from typing import Any

from chipadapt.errors import ChipadaptError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")

log = logging.getLogger(__name__)


def require_safetensors(folder: Path, key: str) -> Path:
    folder = Path(folder)
    if any((folder / name).is_file() for name in WEIGHT_FILES):
        return folder
    pickles = sorted(p.name for pattern in PICKLE_PATTERNS for p in folder.glob(pattern))
    if pickles:
        raise ChipadaptError(
            f"{key}: {folder} holds only pickled weights ({', '.join(pickles[:3])}); they are never "
            "loaded (a pickle can run code): save the model with safetensors"
        )
    raise ChipadaptError(f"{key}: {folder} has no safetensors weights (model.safetensors)")


def _one_line(err: BaseException) -> str:
    """The whole of a library's message on one line: its first line alone can stop mid-sentence
    ("... from one of: ")."""
    text = " ".join(str(err).split())
    # Bounded: some errors list every tensor of the model.
    return (text[:400] + " ...") if len(text) > 400 else text or type(err).__name__


def _natural(name: str) -> list:
    """Sort key that puts layers.2 before layers.10, so "the first" tensor named is the first in the model."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _listed(names, limit: int = 4) -> str:
    names = sorted(names, key=_natural)
    return ", ".join(names[:limit]) + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


# Buffers a model derives from its config rather than loads: older checkpoints saved Llama's rotary
# `inv_freq`, BERT's `position_ids`; transformers recomputes both, so finding them is harmless.
DERIVED = re.compile(r"(^|\.)(rotary_emb\.inv_freq|position_ids)$")


class _DropLoadReport(logging.Filter):
    """transformers prints a per-tensor table (MISSING / UNEXPECTED / MISMATCH) on every imperfect
    load, then for mismatches advises `ignore_mismatched_sizes`, which is not a chipadapt key. The
    checks below say what is wrong in one line instead, so the table is dropped while loading."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


def _check_loading_info(info: dict, folder: Path, key: str, complete: bool, exact: bool) -> None:
    mismatched = sorted(info.get("mismatched_keys") or (), key=lambda m: _natural(m[0]))
    if mismatched:
        name, stored, expected = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise ChipadaptError(
            f"{key}: {folder}: tensor {name} has shape {list(stored)} in the weights but {list(expected)} "
            f"in the architecture config.json describes{more}; the config does not belong to these weights"
        )
    missing = [k for k in info.get("missing_keys") or () if not DERIVED.search(k)]
    if complete and missing:
        raise ChipadaptError(
            f"{key}: {folder} lacks trained weights for {_listed(missing)} (the architecture its config.json "
            "describes has them); refusing a model with randomly initialised tensors"
        )
    if missing:  # a new head on a trained body (an attribute model, a reranker from an encoder)
        log.info("%s: new weights %s initialised for %s", key, _listed(missing), folder)
    unexpected = [k for k in info.get("unexpected_keys") or () if not DERIVED.search(k)]
    if exact and unexpected:
        raise ChipadaptError(
            f"{key}: {folder} holds weights {_listed(unexpected)} that its config.json's architecture does "
            "not have (weights of another model, or a config.json of another model)"
        )


def safe_from_pretrained(
    auto_class: Any, folder: Path, key: str, complete: bool = True, exact: bool = False, **kwargs: Any
):
    """`auto_class.from_pretrained(folder)` under the rules above. Tensors whose shapes differ from
    the architecture config.json describes are always an error. `complete`: every weight the model
    class expects must be in the folder (no freshly initialised tensors; False only where a new
    head is meant). `exact`: also no weights the model would drop (a causal LM loads all it stores;
    an encoder may legitimately drop a pretraining head). Weights transformers ties or derives (a
    tied lm_head, rotary buffers) count as present."""
    from safetensors import SafetensorError
    from transformers.modeling_utils import logger as hf_logger

    folder = require_safetensors(folder, key)
    report_filter = _DropLoadReport()
    hf_logger.addFilter(report_filter)
    try:
        model, info = auto_class.from_pretrained(
            folder,
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            output_loading_info=True,
            # Mismatches come back in `info` (refused below, one line) instead of as transformers'
            # error pointing at its table.
            ignore_mismatched_sizes=True,
            **kwargs,
        )
    except ChipadaptError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as err:
        raise ChipadaptError(f"{key}: cannot load {folder}: {_one_line(err)}") from None
    finally:
        hf_logger.removeFilter(report_filter)
    _check_loading_info(info, folder, key, complete, exact)
    return model


# Files a tokenizer's vocabulary comes from (tokenizer_config.json alone names a class, not a vocabulary).
VOCABULARY_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
    "vocab.txt",
    "*.tiktoken",
)


def has_tokenizer(folder: Path) -> bool:
    return any(next(Path(folder).glob(pattern), None) is not None for pattern in VOCABULARY_FILES)


def embedding_rows(folder: Path, key: str) -> int | None:
    """The rows of the input embedding config.json describes (weights of another shape are refused
    when the model loads); None where the folder has no config or the config does not say."""
    from chipadapt.io.jsonl import json_object

    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    config = json_object(path, key)
    # Multimodal configs (Gemma-3, Llava) keep the language model's vocabulary in text_config.
    for section in (config, config.get("text_config") or {}):
        if isinstance(section, dict) and isinstance(section.get("vocab_size"), int):
            return section["vocab_size"]
    return None


def safe_tokenizer(folder: Path, key: str):
    """The folder's tokenizer, refused when it has ids past the model's embedding rows (every such
    id would fail in the embedding lookup, deep inside training or evaluation)."""
    from transformers import AutoTokenizer

    if not has_tokenizer(folder):
        raise ChipadaptError(
            f"{key}: {folder} has no tokenizer files (none of {', '.join(VOCABULARY_FILES)}); copy the "
            "tokenizer of the model it was trained from into the folder"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise ChipadaptError(f"{key}: cannot load the tokenizer of {folder}: {_one_line(err)}") from None
    rows = embedding_rows(folder, key)
    ids = max(tokenizer.get_vocab().values(), default=-1) + 1
    if rows is not None and ids > rows:
        # Only special tokens past the rows (Gemma-3 270M/1B's <image_soft_token> at id vocab_size, a
        # placeholder no text produces): said, not refused. Ordinary tokens there would be looked up.
        past = {t: i for t, i in tokenizer.get_vocab().items() if i >= rows}
        special = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
        if set(past) <= special | set(tokenizer.all_special_tokens):
            log.warning(
                "%s: tokens %s of %s lie past the model's %d embedding rows; text that contains them fails",
                key,
                ", ".join(f"{t} ({i})" for t, i in sorted(past.items(), key=lambda x: x[1])[:3]),
                folder,
                rows,
            )
            return tokenizer
        raise ChipadaptError(
            f"{key}: the tokenizer of {folder} has {ids:,} token ids but the model has {rows:,} embedding "
            "rows (config.json vocab_size); the tokenizer belongs to another model"
        )
    return tokenizer
