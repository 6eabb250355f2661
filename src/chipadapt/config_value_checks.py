"""Values of train.py's settings outside the groups of config_group_checks, checked before any work:
`loss_guard`, `peft`, `model.source` (every entry point), `retriever`, the root `matmul_precision`,
`stage.validate_before` and `plan`. Each was taken silently (`loss_guard.max_ratio=-1` skipped every step)
or failed once the data was prepared, in a traceback naming no key."""

import difflib
from dataclasses import fields
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from chipadapt.config_groups import LossGuardSchema, PeftSchema, TinyLlamaSourceSchema
from chipadapt.config_typing import WHERE, bounded_number, true_or_false, typed_group, whole_in_place, whole_numbers
from chipadapt.errors import ChipadaptError

# torch.set_float32_matmul_precision takes any string; one it does not know turns TF32 off without a word.
MATMUL_PRECISIONS = ("highest", "high", "medium")
POOLINGS = ("mean", "cls")  # retrieval/encoder.TextEncoder
SOURCE_SCHEMAS = {"chipadapt.models.tiny.TinyLlama": TinyLlamaSourceSchema}


def typed_in_place(group: str, schema: type, node: DictConfig) -> dict:
    """The group typed by its schema (config_typing.typed_group); a string OmegaConf converted is written
    back, since the code reading the group reads the raw node (`enabled: "off"` would be true there)."""
    whole_numbers(schema, node)
    for spec in fields(schema):  # whole_numbers takes `int` fields; `int | None` ones too (peft.r=16.0)
        if spec.type == int | None:
            whole_in_place(node, spec.name)
    values = typed_group(group, schema, node)
    for key, value in values.items():
        if isinstance(node.get(key), str) and not isinstance(value, str):
            node[key] = value
    return values


def whole_number(key: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ChipadaptError(f"{key}: {value!r} is not a whole number >= {low}")


def check_loss_guard(node: DictConfig) -> None:
    guard = typed_in_place("loss_guard", LossGuardSchema, node)
    if "max_ratio" in guard:
        # Below 1 a step is skipped for a loss under the recent mean (a negative ratio: every step after
        # warm-up); 1 itself skips any rise, which tests/test_loss_guard_ddp.py uses to force skips.
        bounded_number("loss_guard.max_ratio", guard["max_ratio"], 1)
    if "window" in guard:
        whole_number("loss_guard.window", guard["window"], 1)
    if "warmup_steps" in guard:
        # 0 compares the first loss with the mean of no losses (a division by zero at step 1).
        whole_number("loss_guard.warmup_steps", guard["warmup_steps"], 1)
    if (
        guard.get("enabled")
        and "window" in guard
        and "warmup_steps" in guard
        and guard["window"] < guard["warmup_steps"]
    ):
        # modules/loss_guard.py compares once it holds warmup_steps losses, and holds at most `window`.
        raise ChipadaptError(
            f"loss_guard.window: {guard['window']} is less than loss_guard.warmup_steps={guard['warmup_steps']}: "
            "the guard would never hold enough losses to compare; make window >= warmup_steps"
        )


def lora_settings() -> set[str]:
    """The keyword arguments peft.LoraConfig takes, beside the schema's; empty when peft is not installed."""
    try:
        from peft import LoraConfig
    except ImportError:
        return set()
    return {spec.name for spec in fields(LoraConfig)}


# What LoRA (models/lora.apply_lora) needs of `peft` once peft.r is set: the keys conf/peft/lora_*.yaml set.
LORA_NEEDS = ("lora_alpha", "lora_dropout", "target_modules", "train_new_token_rows")
# LoraConfig's arguments models/lora.apply_lora gives itself: the same one from the user was a TypeError at
# model setup (task_type) or replaced without a word (trainable_token_indices, from the tokenizer's new rows).
LORA_SET_BY_CODE = ("task_type", "trainable_token_indices")


def check_peft(node: DictConfig) -> None:
    ours = {spec.name for spec in fields(PeftSchema)}
    others = [str(key) for key in node if key not in ours]
    for key in others:
        if key in LORA_SET_BY_CODE:
            raise ChipadaptError(f"peft.{key}: set by chipadapt itself (models/lora.py); remove it")
    if others:
        known = lora_settings()
        for key in others:
            if known and key not in known:
                near = difflib.get_close_matches(key, sorted(ours | known), n=1)
                hint = f"did you mean peft.{near[0]}? " if near else ""
                raise ChipadaptError(f"peft.{key}: unknown key ({hint}peft.LoraConfig does not take it; {WHERE})")
    typed = OmegaConf.masked_copy(node, sorted(ours & set(node)))  # the LoraConfig keys above stay untyped
    peft = typed_in_place("peft", PeftSchema, typed)
    for key in ("r", "train_new_token_rows"):  # `r=16.0`, `train_new_token_rows=off`: as the schema types them
        if key in peft and type(node.get(key)) is not type(peft[key]):
            node[key] = peft[key]
    if peft.get("r") is None:  # peft=none: full fine-tuning, a LoRA setting beside it would do nothing
        unused = [str(key) for key in node if key not in ("name", "r")]
        if unused:
            raise ChipadaptError(
                f"peft.{unused[0]}: a LoRA setting, and peft.r is null (full fine-tuning: no LoRA); "
                "remove it, or choose LoRA with peft=lora_small"
            )
        return
    r = peft["r"]
    lacking = [key for key in LORA_NEEDS if key not in node]
    if lacking:
        raise ChipadaptError(
            f"peft.r={r}: LoRA also needs {', '.join('peft.' + key for key in lacking)}; "
            f"choose peft=lora_small (and peft.r={r} on it)"
        )
    if r < 1:
        raise ChipadaptError(f"peft.r: {r} is not a rank >= 1 (peft=none trains every weight)")
    if "lora_alpha" in peft:
        bounded_number("peft.lora_alpha", peft["lora_alpha"], 0, low_open=True)
    if "lora_dropout" in peft:
        dropout = bounded_number("peft.lora_dropout", peft["lora_dropout"], 0)
        if dropout >= 1:
            raise ChipadaptError(f"peft.lora_dropout: {peft['lora_dropout']} must be in [0, 1)")
    targets = node.get("target_modules")
    if "target_modules" in node and not (
        (isinstance(targets, str) and targets)
        or (isinstance(targets, (list, ListConfig)) and targets and all(isinstance(t, str) and t for t in targets))
    ):
        raise ChipadaptError(
            f"peft.target_modules: {targets!r} is not a module name, a regular expression or a list of names"
        )


def check_model_source(model: DictConfig) -> None:
    """`model.source.hidden_size=abc` failed in transformers' config class, once the model was built."""
    source = model.get("source")
    if not isinstance(source, DictConfig):
        return
    schema = SOURCE_SCHEMAS.get(str(source.get("_target_")))
    if schema is None:
        return
    values = typed_in_place("model.source", schema, source)
    for spec in fields(schema):
        if spec.type is int and spec.name in values:
            whole_number(f"model.source.{spec.name}", values[spec.name], 0 if spec.name == "seed" else 1)


def check_retriever(retriever: DictConfig) -> None:
    """stage=retriever's `retriever` group: InfoNCE's temperature (a negative one rewards wrong passages)
    and the encoder's pooling, named with the key a user sets."""
    temperature = OmegaConf.select(retriever, "train.temperature")
    if temperature is not None:
        bounded_number("retriever.train.temperature", temperature, 0, low_open=True)
    for key in ("batch_size", "n_passages"):
        value = OmegaConf.select(retriever, f"train.{key}")
        if value is not None:
            whole_number(f"retriever.train.{key}", value, 1)
    pooling = OmegaConf.select(retriever, "encoder.pooling")
    if pooling is not None and pooling not in POOLINGS:
        raise ChipadaptError(f"retriever.encoder.pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")


def check_train_settings(cfg: DictConfig) -> None:
    """train.py's settings outside the typed groups (config_schema.validate calls it when `stage` is set)."""
    if "matmul_precision" in cfg and cfg.matmul_precision not in MATMUL_PRECISIONS:
        raise ChipadaptError(f"matmul_precision: {cfg.matmul_precision!r} is not one of {', '.join(MATMUL_PRECISIONS)}")
    stage = cfg.get("stage")
    if isinstance(stage, DictConfig) and "validate_before" in stage:
        true_or_false(stage, "validate_before", "stage.validate_before")
    speed = OmegaConf.select(cfg, "plan.tokens_per_s_per_gpu")
    if speed is not None:
        bounded_number("plan.tokens_per_s_per_gpu", speed, 0, low_open=True)
    for group, check in (("loss_guard", check_loss_guard), ("peft", check_peft), ("retriever", check_retriever)):
        if isinstance(cfg.get(group), DictConfig):
            check(cfg[group])
