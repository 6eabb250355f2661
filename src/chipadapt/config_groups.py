"""The typed schema of each config group users edit: what keys a group takes and of what type.

Types only: every default stays in the YAML that defines it (fields here are MISSING), so a schema
says what a key is, never what it is worth. config_schema.validate merges each group present in the
composed config into its schema (config_typing.typed_group); the ranges are checked in config_group_checks."""

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


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
    chat_template_from: str = MISSING
    chat_template: str | None = MISSING
    non_float_from: str | None = MISSING


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


@dataclass
class LossGuardSchema:
    """`loss_guard` (train.py): skip an optimizer step whose loss spikes (modules/loss_guard.py)."""

    enabled: bool = MISSING
    max_ratio: float = MISSING
    window: int = MISSING
    warmup_steps: int = MISSING


@dataclass
class PeftSchema:
    """`peft` (lora_small, lora_large, none): LoRA's settings. Other keys of peft.LoraConfig pass through
    (`+peft.use_rslora=true`) and are checked by name in config_value_checks."""

    name: str = MISSING
    r: int | None = MISSING
    lora_alpha: float = MISSING
    lora_dropout: float = MISSING
    target_modules: Any = MISSING
    train_new_token_rows: bool = MISSING


@dataclass
class TinyLlamaSourceSchema:
    """`model.source` of model=tiny and model=llama_1b_random (chipadapt.models.tiny.TinyLlama)."""

    _target_: str = MISSING
    cache_dir: str = MISSING
    text_dir: str = MISSING
    vocab_size: int = MISSING
    hidden_size: int = MISSING
    num_layers: int = MISSING
    num_heads: int = MISSING
    num_kv_heads: int = MISSING
    intermediate_size: int = MISSING
    max_position_embeddings: int = MISSING
    seed: int = MISSING
