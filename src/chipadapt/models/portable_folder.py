"""Hugging Face folders that transformers 4.x loads as well as 5.x.

Users hand our outputs to vLLM, TGI or an lm-eval install, many of them pinned to transformers 4.x.
transformers 5 writes a folder that 4.x refuses or, worse, misreads (each checked with 4.46):
- tokenizer_config.json names the class `TokenizersBackend`, which 4.x does not have: it refuses the
  folder. `PreTrainedTokenizerFast` is the same tokenizer read from tokenizer.json in both.
- The chat template is only in chat_template.jinja, which 4.46 does not read: the model would be
  served with no template. It is also written into tokenizer_config.json, where both read it.
- Rotary settings are only in `rope_parameters`; 4.x reads the top-level `rope_theta` (default
  10000) and `rope_scaling`, so SmolLM2 (100000) would load, run and score with the wrong rotary
  frequencies, silently. They are written at the top level too (5.x reads `rope_parameters` first).
- `dtype` is 4.x's `torch_dtype`.
Only flat rotary settings are mirrored; a model with one per attention type (Gemma-3) is left as it is.
"""

import json
from pathlib import Path

FIVE_ONLY_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def make_portable(folder: str | Path) -> None:
    """Add the transformers 4.x spellings to a saved folder's config.json and tokenizer_config.json,
    in place (called on a folder still being written, before it is published)."""
    folder = Path(folder)
    _edit(folder / "config.json", _portable_config)
    template = folder / "chat_template.jinja"
    _edit(folder / "tokenizer_config.json", lambda c: _portable_tokenizer_config(c, template))


def _edit(path: Path, change) -> None:
    if not path.is_file():
        return
    before = json.loads(path.read_text(encoding="utf-8"))
    after = change(dict(before))
    if after != before:
        path.write_text(json.dumps(after, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _portable_config(config: dict) -> dict:
    config = _with_legacy_rope(config)
    if isinstance(config.get("text_config"), dict):  # multimodal configs keep the language model's here
        config["text_config"] = _with_legacy_rope(dict(config["text_config"]))
    if "dtype" in config and "torch_dtype" not in config:
        config["torch_dtype"] = config["dtype"]
    return config


def _with_legacy_rope(config: dict) -> dict:
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict) or not isinstance(rope.get("rope_theta"), int | float):
        return config  # absent, or one set per attention type
    config.setdefault("rope_theta", rope["rope_theta"])
    if rope.get("rope_type", "default") != "default" and config.get("rope_scaling") is None:
        config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    return config


def _portable_tokenizer_config(config: dict, template: Path) -> dict:
    name = config.get("tokenizer_class")
    if name in FIVE_ONLY_TOKENIZER_CLASSES:
        config["tokenizer_class"] = FIVE_ONLY_TOKENIZER_CLASSES[name]
    if template.is_file() and "chat_template" not in config:
        config["chat_template"] = template.read_text(encoding="utf-8")
    return config
