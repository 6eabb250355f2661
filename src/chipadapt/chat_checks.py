"""chat.py's settings checked before the model loads: a value generate() would take silently (a
temperature below 0, top_p above 1, no new tokens) or a setting it would never read (a misspelt
`generate.*` key) is one line naming the key, not a session that does something else than asked."""

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.config_typing import RETIRED_KEYS
from chipadapt.errors import ChipadaptError
from chipadapt.steerlm.attribute_record import recorded_format

GENERATE_KEYS = ("max_new_tokens", "temperature", "top_p", "attributes", "system_prompt")
# config.json architectures of a model that writes text: its hidden states were never trained as
# sentence embeddings, so retrieval over them would rank passages by chance.
GENERATIVE_ARCHITECTURES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_generate(generate: DictConfig) -> None:
    unknown = sorted(set(generate) - set(GENERATE_KEYS))
    if unknown:
        raise ChipadaptError(f"generate.{unknown[0]}: unknown setting (known: {', '.join(GENERATE_KEYS)})")
    tokens = generate.max_new_tokens
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        raise ChipadaptError(f"generate.max_new_tokens: {tokens!r} is not a whole number of at least 1")
    if not _number(generate.temperature) or generate.temperature < 0:
        raise ChipadaptError(f"generate.temperature: {generate.temperature!r} is not a number >= 0 (0: greedy)")
    if not _number(generate.top_p) or not 0 < generate.top_p <= 1:
        raise ChipadaptError(f"generate.top_p: {generate.top_p!r} is not a number in (0, 1]")
    if generate.attributes is not None and not isinstance(generate.attributes, str):
        raise ChipadaptError(f"generate.attributes: {generate.attributes!r} is not name:value,... (quality:4,humor:0)")
    if generate.system_prompt is not None and not isinstance(generate.system_prompt, str):
        raise ChipadaptError(f"generate.system_prompt: {generate.system_prompt!r} is not a text")


def check_encoder_folders(encoders: dict | None, key: str) -> None:
    """Refuse an encoder path that holds a generative model (e.g. a chat model's folder given by mistake)."""
    for name, encoder in (encoders or {}).items():
        path = (encoder or {}).get("path")
        config = Path(str(path)) / "config.json" if path else None
        if config is None or not config.is_file():
            continue  # a missing folder is the encoder loader's to report
        try:
            architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        except (ValueError, AttributeError):
            continue
        generative = [a for a in architectures if isinstance(a, str) and a.endswith(GENERATIVE_ARCHITECTURES)]
        if generative:
            raise ChipadaptError(
                f"{key}.encoders.{name}.path: {path} holds a generative model ({generative[0]}), not a "
                "sentence-transformers encoder; give a stage=retriever run's model/ or an embedding model's folder"
            )


def check_chat_config(cfg: DictConfig) -> None:
    check_generate(cfg.generate)
    if "attribute_order" in cfg:  # `+attribute_order=...` or a config of the user's own: nothing reads it now
        raise ChipadaptError(f"attribute_order: {RETIRED_KEYS['attribute_order']}")
    if cfg.get("retrieval"):
        retrieval = OmegaConf.to_container(cfg.retrieval, resolve=True)
        if "use" not in retrieval:  # `+retrieval.index_dir=...` alone: a setting for retrieval nobody turned on
            raise ChipadaptError(
                f"retrieval.{next(iter(retrieval))}: set, but no retrieval is chosen; add retrieval=openroad"
            )
        check_encoder_folders(retrieval.get("encoders"), "retrieval")


def check_attribute_record(folder: Path, key: str) -> None:
    """Refuse attributes for a model whose folder records no SteerLM attribute format (its order and
    template), with evaluate.py's reason and words (steerlm/attribute_record.py recorded_format): the model
    never learned attribute strings, so prompting it with one is a prompt it never saw. chat.py warned and went
    on where evaluate.py refused the same setting on the same model."""
    recorded_format(folder, key)
