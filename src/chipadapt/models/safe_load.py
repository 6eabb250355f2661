"""The one way weights come off disk: safetensors only, local files only, no remote code.

A folder with only pickled weights (`pytorch_model.bin`, `*.pt`) is refused, never unpickled: a
pickle can run code. A model whose trained head is missing (an attribute model folder that is
really a plain causal LM, an encoder without its weights) is an error, not a warning and a random
head. Whatever else goes wrong while reading (a truncated file, a damaged header, mismatched
shapes) is one line naming the folder and the config key."""

from pathlib import Path
from typing import Any

from chipadapt.errors import ChipadaptError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


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


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def safe_from_pretrained(auto_class: Any, folder: Path, key: str, complete: bool = False, **kwargs: Any):
    """`auto_class.from_pretrained(folder)` under the rules above. `complete`: every weight the
    model class expects must be in the folder (no freshly initialised heads)."""
    from safetensors import SafetensorError

    folder = require_safetensors(folder, key)
    try:
        model, info = auto_class.from_pretrained(
            folder,
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            output_loading_info=True,
            **kwargs,
        )
    except ChipadaptError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as err:
        raise ChipadaptError(f"{key}: cannot load {folder}: {_first_line(err)}") from None
    if complete and info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise ChipadaptError(
            f"{key}: {folder} lacks trained weights for {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}; refusing a randomly initialised model"
        )
    return model


def safe_tokenizer(folder: Path, key: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise ChipadaptError(f"{key}: cannot load the tokenizer of {folder}: {_first_line(err)}") from None
