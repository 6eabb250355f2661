"""The composed config checked before any work starts (`validate`), one ChipadaptError naming the key.

Checked per group present in the composed config: wrong types (`optim.lr=abc`), unknown keys
(`+optim.lrr=1e-3`, which Hydra would add silently), values out of range (`merge.lam=1.5` without
`merge.allow_extrapolation=true`), required keys left unset (`models.chip`). The parts, each its own
module: the groups' typed schemas (config_groups), reading a group as its schema types it
(config_typing), each group's values (config_group_checks), train.py's other settings
(config_value_checks), and what a job asks for across groups (config_job_checks). Their public names
are importable from here too."""

from omegaconf import DictConfig, OmegaConf

from chipadapt.config_group_checks import (
    ATTENTION,
    CURATE_BOUNDS,
    DTYPES,
    check_blend,
    check_curate,
    check_merge,
    check_model,
    check_optim,
)
from chipadapt.config_groups import (
    BlendSchema,
    CurateDedupSchema,
    CurateGeneratedSchema,
    CurateLimitsSchema,
    CurateSchema,
    FSDPStrategySchema,
    MergeSchema,
    ModelSchema,
    OptimSchema,
)
from chipadapt.config_job_checks import (
    EVAL_COUNTS,
    FSDP_STRATEGY,
    TOKENIZER_UNUSED,
    check_device,
    check_eval,
    check_fsdp_strategy,
    check_optimized_metric,
    check_tokenizer_used,
)
from chipadapt.config_typing import RETIRED_KEYS, WHERE, true_or_false, typed_group, whole_in_place, whole_numbers
from chipadapt.config_value_checks import check_model_source, check_train_settings
from chipadapt.errors import ChipadaptError
from chipadapt.run_settings import is_unread_in_run
from chipadapt.stage_reads import check_stage_reads
from chipadapt.steerlm.stage_settings import check_steerlm_stages
from chipadapt.trainer_schema import check_trainer, check_trainer_names

__all__ = [
    "ATTENTION",
    "CHECKS",
    "CURATE_BOUNDS",
    "DTYPES",
    "EVAL_COUNTS",
    "FSDP_STRATEGY",
    "GROUPS",
    "RETIRED_KEYS",
    "ROOT_TYPES",
    "TOKENIZER_UNUSED",
    "WHERE",
    "BlendSchema",
    "CurateDedupSchema",
    "CurateGeneratedSchema",
    "CurateLimitsSchema",
    "CurateSchema",
    "FSDPStrategySchema",
    "MergeSchema",
    "ModelSchema",
    "OptimSchema",
    "check_blend",
    "check_curate",
    "check_device",
    "check_eval",
    "check_fsdp_strategy",
    "check_merge",
    "check_model",
    "check_optim",
    "check_optimized_metric",
    "check_tokenizer_used",
    "validate",
]

GROUPS = {"optim": OptimSchema, "merge": MergeSchema, "model": ModelSchema}
CHECKS = {"optim": check_optim, "merge": check_merge, "model": check_model}
ROOT_TYPES = {"seed": int, "resume": bool, "overwrite": bool, "max_shard_bytes": int, "dry_run": bool}


def validate(cfg: DictConfig) -> None:
    """Raise a ChipadaptError for the first problem found in the composed config."""
    check_stage_reads(cfg)  # first: a key required by a group the stage never reads (stage=reranker model=llama2_7b)
    stage = OmegaConf.select(cfg, "stage.name")

    def select(key: str) -> object:
        return OmegaConf.select(cfg, key, throw_on_missing=False)

    # A required key of what the stage never reads is no demand: `experiment=chipnemo_7b stage=reranker` was
    # asked for model.path, and refused `model.path=...` as unread.
    missing = sorted(
        key
        for key in OmegaConf.missing_keys(cfg)
        if not key.startswith("hydra") and not (stage is not None and is_unread_in_run(key, stage, select))
    )
    if missing:
        raise ChipadaptError(f"{missing[0]}: required, not set (add {missing[0]}=...)")
    for key, kind in ROOT_TYPES.items():
        if key in cfg and cfg[key] is not None:
            if kind is bool:
                true_or_false(cfg, key, key)
                continue
            value = whole_in_place(cfg, key)  # `max_shard_bytes=2e9`
            if isinstance(value, bool) or not isinstance(value, int):
                raise ChipadaptError(f"{key}: {value!r} is not a whole number")
    if isinstance(cfg.get("device"), str):
        check_device(cfg.device)
    if isinstance(cfg.get("eval"), DictConfig):
        check_eval(cfg.eval)
    check_optimized_metric(cfg)
    if "stage" in cfg:  # train.py
        check_trainer(cfg)
        check_steerlm_stages(cfg)  # stage=annotate|bootstrap: counts and attribute settings (steerlm/stage_settings.py)
        check_train_settings(cfg)  # loss_guard, peft, retriever, matmul_precision, ... (config_value_checks.py)
        check_tokenizer_used(cfg)
        if isinstance(cfg.get("trainer"), DictConfig):
            check_fsdp_strategy(cfg.trainer)
    for group, schema in GROUPS.items():
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            whole_numbers(schema, node)
            if group == "optim" and isinstance(node.get("scheduler"), DictConfig):
                whole_in_place(node.scheduler, "num_warmup_steps")  # the scheduler is any callable: untyped
            CHECKS[group](typed_group(group, schema, node))
    if isinstance(cfg.get("model"), DictConfig):
        check_model_source(cfg.model)
    data = cfg.get("data")
    if isinstance(data, DictConfig) and "seq_len" in data:  # a training blend (curation has data.curate)
        whole_numbers(BlendSchema, data)
        check_blend(typed_group("data", BlendSchema, data))
    if isinstance(data, DictConfig) and isinstance(data.get("curate"), DictConfig):
        whole_numbers(CurateSchema, data.curate)
        check_curate(typed_group("data.curate", CurateSchema, data.curate))
    if "stage" in cfg:
        check_trainer_names(cfg)
