"""Typed schemas for the config groups users edit, checked before any work starts.

Types only: every default stays in the YAML that defines it (fields here are MISSING), so a schema
says what a key is, never what it is worth. Checked per group present in the composed config:
wrong types (`optim.lr=abc`), unknown keys (`+optim.lrr=1e-3`, which Hydra would add silently),
values out of range (`merge.lam=1.5` without `merge.allow_extrapolation=true`), required keys left
unset (`models.chip`). Each failure is a ChipadaptError naming the key."""

import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from chipadapt.errors import ChipadaptError
from chipadapt.steerlm.stage_settings import check_steerlm_stages
from chipadapt.trainer_schema import check_trainer

WHERE = "see src/chipadapt/config_schema.py for the keys each group takes"


@dataclass
class OptimSchema:
    name: str = MISSING
    lr: float = MISSING
    optimizer: Any = MISSING
    scheduler: Any | None = MISSING
    gradient_clip_val: float | None = MISSING


@dataclass
class MergeSchema:
    name: str = MISSING
    lam: float = MISSING
    schedule: list[Any] = field(default_factory=lambda: MISSING)
    method: Any = MISSING
    allow_extrapolation: bool = MISSING
    out_dtype: str | None = MISSING


@dataclass
class BlendSchema:
    """A training blend (DAPT corpus, SFT/SteerLM conversations, attribute labels)."""

    name: str = MISSING
    seq_len: int = MISSING
    micro_batch_size: int = MISSING
    global_batch_size: int = MISSING
    val_fraction: float = MISSING
    val_max_bytes: int = MISSING
    val_max_conversations: int = MISSING
    num_workers: int = MISSING
    packing: bool = MISSING
    sources: dict[str, Any] = field(default_factory=lambda: MISSING)
    val_sources: dict[str, Any] | None = MISSING
    attributes: Any = MISSING
    template: Any = MISSING


@dataclass
class ModelSchema:
    name: str = MISSING
    path: str | None = MISSING
    source: Any | None = MISSING
    doc_separator: str | None = MISSING
    dtype: str = MISSING
    attn_implementation: str = MISSING
    gradient_checkpointing: bool = MISSING


@dataclass
class CurateLimitsSchema:
    max_bytes: int = MISSING
    min_chars: int = MISSING
    max_lines: int = MISSING


@dataclass
class CurateGeneratedSchema:
    banners: list[str] = field(default_factory=lambda: MISSING)
    banner_lines: int = MISSING
    max_mean_line_length: float = MISSING
    max_line_length: int = MISSING
    max_compression_ratio: float = MISSING
    netlist_instance_share: float = MISSING


@dataclass
class CurateDedupSchema:
    near: bool = MISSING
    num_perm: int = MISSING
    shingle: int = MISSING
    threshold: float = MISSING


@dataclass
class CurateSchema:
    """`data.curate` (python -m chipadapt.data.curate)."""

    inputs: list[str] = field(default_factory=lambda: MISSING)
    workers: int = MISSING
    docs_per_shard: int = MISSING
    redact: bool = MISSING
    limits: CurateLimitsSchema = field(default_factory=CurateLimitsSchema)
    generated: CurateGeneratedSchema = field(default_factory=CurateGeneratedSchema)
    dedup: CurateDedupSchema = field(default_factory=CurateDedupSchema)


@dataclass
class FSDPStrategySchema:
    """`trainer.strategy` of trainer=fsdp (chipadapt.scaleout.strategies.fsdp_strategy)."""

    _target_: str = MISSING
    layer_classes: list[str] = field(default_factory=lambda: MISSING)
    sharding_strategy: str = MISSING
    activation_checkpointing: bool = MISSING
    cpu_offload: bool = MISSING
    state_dict_type: str = MISSING
    load_on_rank0: bool = MISSING
    limit_all_gathers: bool = MISSING


FSDP_STRATEGY = "chipadapt.scaleout.strategies.fsdp_strategy"


def check_fsdp_strategy(trainer: DictConfig) -> None:
    """Typed like a group; the values OmegaConf converts are written back (`load_on_rank0=off` is
    false here, and would be a true string to the strategy)."""
    strategy = trainer.get("strategy")
    if not isinstance(strategy, DictConfig) or strategy.get("_target_") != FSDP_STRATEGY:
        return
    for key, value in _typed("trainer.strategy", FSDPStrategySchema, strategy).items():
        strategy[key] = value


GROUPS = {"optim": OptimSchema, "merge": MergeSchema, "model": ModelSchema}
ROOT_TYPES = {"seed": int, "resume": bool, "overwrite": bool, "max_shard_bytes": int, "dry_run": bool}
DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("sdpa", "eager", "flash_attention_2", "auto")


def _whole_numbers(schema: type, node: DictConfig) -> None:
    """`max_bytes=5e6` is a float to Hydra's parser, and a whole number to the user who wrote it: an
    integral float in a field the schema types int is made that int, in the config the job reads.
    `5.5` stays a float and is refused by `_typed`, naming the key."""
    for spec in fields(schema):
        value = node.get(spec.name) if spec.name in node else None
        if is_dataclass(spec.type) and isinstance(value, DictConfig):
            _whole_numbers(spec.type, value)
        elif spec.type is int and isinstance(value, float) and value.is_integer():
            node[spec.name] = int(value)


# Keys a release removed, with what replaces them: an old command line or config names the new key,
# not "unknown key" (cli.describe_hydra_error says the same for an override of a key no config has).
RETIRED_KEYS = {
    "data.val_max_sequences": "replaced by data.val_max_bytes, bytes of held-out text per validation split (N "
    "sequences were other text at each seq_len and tokenizer; e.g. data.val_max_bytes=32768)",
}


def _typed(group: str, schema: type, node: DictConfig) -> dict:
    """The group merged into its schema: OmegaConf converts what it can ("1e-3" -> 0.001) and
    raises for what it cannot and for keys the schema lacks. Returns plain values, without the
    keys this group's YAML does not set."""
    try:
        values = OmegaConf.to_container(node, resolve=True)
        typed = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(schema), values))
        return {key: value for key, value in typed.items() if value != "???"}
    except OmegaConfBaseException as err:
        key = f"{group}.{err.full_key}" if getattr(err, "full_key", None) else group
        message = str(getattr(err, "msg", err)).splitlines()[0]
        if "not in struct" in message or "Key '" in message and "not in" in message:
            raise ChipadaptError(f"{key}: {RETIRED_KEYS.get(key, f'unknown key ({WHERE})')}") from None
        raise ChipadaptError(f"{key}: {message}") from None


def _number(key: str, value: Any, low: float | None = None, high: float | None = None, low_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ChipadaptError(f"{key}: {value!r} is not a finite number")
    if low is not None and (value < low or (low_open and value == low)):
        raise ChipadaptError(f"{key}: {value} must be {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        raise ChipadaptError(f"{key}: {value} must be <= {high}")
    return float(value)


def _required(group: str, values: dict, key: str) -> Any:
    if key not in values:
        raise ChipadaptError(f"{group}.{key}: required, not set")
    return values[key]


def check_optim(optim: dict) -> None:
    _number("optim.lr", _required("optim", optim, "lr"), 0, low_open=True)
    if optim.get("gradient_clip_val") is not None:
        _number("optim.gradient_clip_val", optim["gradient_clip_val"], 0)


def check_merge(merge: dict) -> None:
    extrapolate = bool(_required("merge", merge, "allow_extrapolation"))
    schedule = merge.get("schedule") or []
    lams = [("merge.lam", _required("merge", merge, "lam"))]
    lams += [
        (f"merge.schedule[{i}].lam", rule.get("lam") if isinstance(rule, dict) else None)
        for i, rule in enumerate(schedule)
    ]
    for key, lam in lams:
        if not isinstance(lam, (int, float)) or isinstance(lam, bool):
            raise ChipadaptError(f"{key}: {lam!r} is not a number")
        if not extrapolate and not 0 <= lam <= 1:
            raise ChipadaptError(f"{key}: {lam} is outside [0, 1]; merge.allow_extrapolation=true allows it")
    for i, rule in enumerate(schedule):
        if not isinstance(rule, dict) or "pattern" not in rule:
            raise ChipadaptError(f"merge.schedule[{i}]: expected {{pattern: REGEX, lam: NUMBER}}")
        try:
            re.compile(str(rule["pattern"]))
        except re.error as err:
            raise ChipadaptError(
                f"merge.schedule[{i}].pattern: {rule['pattern']!r} is not a regular expression ({err})"
            ) from None
    method = merge.get("method") if isinstance(merge.get("method"), dict) else {}
    bounds = {
        "density": (0, 1, True),
        "epsilon": (0, 1, False),
        "dot_threshold": (0, 1, True),
        "scale": (None, None, False),
    }
    for name, (low, high, open_low) in bounds.items():
        if name in method:
            _number(f"merge.method.{name}", method[name], low, high, open_low)


def check_model(model: dict) -> None:
    if "dtype" in model and model["dtype"] not in DTYPES:
        raise ChipadaptError(f"model.dtype: {model['dtype']!r} is not one of {', '.join(DTYPES)}")
    if "attn_implementation" in model and model["attn_implementation"] not in ATTENTION:
        raise ChipadaptError(
            f"model.attn_implementation: {model['attn_implementation']!r} is not one of {', '.join(ATTENTION)}"
        )


def check_blend(data: dict) -> None:
    for key in ("seq_len", "micro_batch_size", "global_batch_size"):
        if key in data:
            _number(f"data.{key}", data[key], 0, low_open=True)
    if "val_fraction" in data:
        _number("data.val_fraction", data["val_fraction"], 0, 1)
    if "val_max_bytes" in data:
        _number("data.val_max_bytes", data["val_max_bytes"], 0, low_open=True)
    for split in ("sources", "val_sources"):
        for name, spec in (data.get(split) or {}).items():
            if spec is None:
                continue
            if not isinstance(spec, dict) or "path" not in spec:
                raise ChipadaptError(f"data.{split}.{name}: expected a source with a `path`")
            for key in ("weight", "epochs"):
                if key in spec:
                    _number(f"data.{split}.{name}.{key}", spec[key], 0)
            if "max_bytes" in spec:
                _number(f"data.{split}.{name}.max_bytes", spec["max_bytes"], 0, low_open=True)


# data.curate's numbers: (lowest, highest, lowest excluded); a whole number where the schema says int.
CURATE_BOUNDS = {
    "workers": (1, None, False),
    "docs_per_shard": (1, None, False),
    "limits.max_bytes": (0, None, True),
    "limits.min_chars": (0, None, False),
    "limits.max_lines": (1, None, False),
    "generated.banner_lines": (0, None, False),
    "generated.max_mean_line_length": (0, None, True),
    "generated.max_line_length": (0, None, True),
    "generated.max_compression_ratio": (0, None, True),
    "generated.netlist_instance_share": (0, 1, False),
    # A shingle of 0 words makes every document the same empty set: all but one would go as near-duplicates.
    "dedup.shingle": (1, None, False),
    "dedup.num_perm": (2, None, False),
    "dedup.threshold": (0, 1, True),
}


def check_curate(curate: dict) -> None:
    for dotted, (low, high, low_open) in CURATE_BOUNDS.items():
        section, _, key = dotted.rpartition(".")
        values = curate.get(section) if section else curate
        value = values.get(key, "???") if isinstance(values, dict) else "???"
        if value != "???":
            _number(f"data.curate.{dotted}", value, low, high, low_open)


def check_device(device: str) -> None:
    """The root `device` (evaluate, merge): auto or a torch device this machine has."""
    if device == "auto":
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ChipadaptError(f"device: {device!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ChipadaptError(f"device: {device} asked for, but torch sees no CUDA GPU here (device=auto or cpu)")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ChipadaptError(f"device: {device} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")


# Counts an evaluation task takes (conf/eval/*.yaml); each is a whole number >= its minimum, or null.
EVAL_COUNTS = {
    "limit": 1,
    "batch_size": 1,
    "max_new_tokens": 1,
    "num_fewshot": 0,
    "samples": 1,
    "top_k": 1,
    "budget_tokens": 1,
    "misses_k": 0,
    "mrr_k": 1,
}


def check_eval(tasks: DictConfig) -> None:
    """Each task's counts, so that `eval.mcq.limit=abc` names the key rather than a failed instantiation."""
    for task, node in tasks.items():
        if not isinstance(node, DictConfig):
            continue
        for key, low in EVAL_COUNTS.items():
            value = node.get(key)
            if value is None:
                continue
            if isinstance(value, float) and value.is_integer():  # `limit=1e3`
                node[key] = value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ChipadaptError(f"eval.{task}.{key}: {value!r} is not a whole number >= {low}")


CHECKS = {"optim": check_optim, "merge": check_merge, "model": check_model}


def check_optimized_metric(cfg: DictConfig) -> None:
    """evaluate.py and merge.py record only their tasks' metrics (`<task>.<metric>`): a metric of a task
    that is not selected would be found missing only after every task ran."""
    metric = cfg.get("optimized_metric")
    if not metric or "stage" in cfg or "eval" not in cfg:  # train.py's metrics are known only once it ran
        return
    tasks = list(cfg.eval or {})
    if str(metric).split(".")[0] not in tasks:
        raise ChipadaptError(
            f"optimized_metric: {metric!r} is not a metric of the selected tasks (eval=[{','.join(tasks)}]); "
            "name one as <task>.<metric>, e.g. ifeval.prompt_loose"
        )


# Stages whose models keep their own tokenizers: they never read the `tokenizer` group, which a user who
# asked for `tokenizer=augmented` there took as applied (the run trained with the encoder's own).
TOKENIZER_UNUSED = ("retriever", "reranker", "annotate")


def check_tokenizer_used(cfg: DictConfig) -> None:
    stage, tokenizer = OmegaConf.select(cfg, "stage.name"), OmegaConf.select(cfg, "tokenizer.name")
    if stage in TOKENIZER_UNUSED and tokenizer not in (None, "base"):
        raise ChipadaptError(
            f"tokenizer={tokenizer}: stage={stage} does not use it (its models keep their own tokenizers); "
            "leave tokenizer at base"
        )


def validate(cfg: DictConfig) -> None:
    """Raise a ChipadaptError for the first problem found in the composed config."""
    missing = sorted(key for key in OmegaConf.missing_keys(cfg) if not key.startswith("hydra"))
    if missing:
        raise ChipadaptError(f"{missing[0]}: required, not set (add {missing[0]}=...)")
    for key, kind in ROOT_TYPES.items():
        if key in cfg and cfg[key] is not None:
            value = cfg[key]
            if kind is int and isinstance(value, float) and value.is_integer():  # `max_shard_bytes=2e9`
                cfg[key] = value = int(value)
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ChipadaptError(f"{key}: {value!r} is not a whole number")
            if kind is bool and not isinstance(value, bool):
                raise ChipadaptError(f"{key}: {value!r} is not true or false")
    if isinstance(cfg.get("device"), str):
        check_device(cfg.device)
    if isinstance(cfg.get("eval"), DictConfig):
        check_eval(cfg.eval)
    check_optimized_metric(cfg)
    if "stage" in cfg:  # train.py
        check_trainer(cfg)
        check_steerlm_stages(cfg)  # stage=annotate|bootstrap: counts and attribute settings (steerlm/stage_settings.py)
        check_tokenizer_used(cfg)
        if isinstance(cfg.get("trainer"), DictConfig):
            check_fsdp_strategy(cfg.trainer)
    for group, schema in GROUPS.items():
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            _whole_numbers(schema, node)
            CHECKS[group](_typed(group, schema, node))
    data = cfg.get("data")
    if isinstance(data, DictConfig) and "seq_len" in data:  # a training blend (curation has data.curate)
        _whole_numbers(BlendSchema, data)
        check_blend(_typed("data", BlendSchema, data))
    if isinstance(data, DictConfig) and isinstance(data.get("curate"), DictConfig):
        _whole_numbers(CurateSchema, data.curate)
        check_curate(_typed("data.curate", CurateSchema, data.curate))
