"""The composed config checked before any work starts (`validate`), one ChipadaptError naming the key.

Checked per group present in the composed config: wrong types (`optim.lr=abc`), unknown keys
(`+optim.lrr=1e-3`, which Hydra would add silently), values out of range (`merge.lam=1.5` without
`merge.allow_extrapolation=true`), required keys left unset (`models.chip`). The parts, each its own
module: the groups' typed schemas (config_groups), reading a group as its schema types it
(config_typing), each group's values (config_group_checks), train.py's other settings
(config_value_checks), and what a job asks for across groups (config_job_checks). Their public names
are importable from here too."""

import difflib
from pathlib import Path

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
    check_root_values,
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
    "check_added_root_keys",
    "check_blend",
    "check_target_keys",
    "check_curate",
    "check_device",
    "check_eval",
    "check_fsdp_strategy",
    "check_merge",
    "check_model",
    "check_optim",
    "check_optimized_metric",
    "command_line_adds",
    "check_tokenizer_used",
    "validate",
]

GROUPS = {"optim": OptimSchema, "merge": MergeSchema, "model": ModelSchema}
CHECKS = {"optim": check_optim, "merge": check_merge, "model": check_model}
ROOT_TYPES = {"seed": int, "resume": bool, "overwrite": bool, "max_shard_bytes": int, "dry_run": bool}


def _command_line_overrides() -> list:
    """The command line's overrides as Hydra parsed them; [] where the config was composed without Hydra's
    job config."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))


def command_line_adds(forced: bool = False) -> list[str]:
    """The keys the command line adds with `+key=value` (and `++key=value` with `forced`); a group added
    (`+experiment=x`, `+data/template@t=x`) is no key."""
    return [
        override.key_or_group
        for override in _command_line_overrides()
        if (override.is_add() or forced and override.is_force_add())
        and override.package is None
        and "/" not in override.key_or_group
    ]


def command_line_deletes() -> list[str]:
    """The keys the command line deletes with `~key` (a config put them there)."""
    return [o.key_or_group for o in _command_line_overrides() if o.is_delete() and o.package is None]


def check_added_root_keys(cfg: DictConfig) -> None:
    """A `+key=value` on the command line whose top-level key no config of this command has (`+resum=false`,
    `+overwrit=true`, `+fooo.bar=1`): Hydra adds it and nothing reads it, so the typo would pass unsaid.
    A group's own keys (`+data.foo`) are its schema's to check; a key under a config group the command could
    select (`+retrieval.index_dir` in chat.py, `+eval.x.y` in merge.py with eval=[]) is left to the group's
    checks, as is `++key=value` (it may set a key a selected config put at the top level)."""
    from hydra.core.hydra_config import HydraConfig

    adds = command_line_adds()
    if not adds:
        return
    hydra = HydraConfig.get()
    # The roots of the command's config: those holding anything the command line did not add.
    added = set(adds)

    def only_added(node: object, prefix: str) -> bool:
        if prefix in added:
            return True
        if not isinstance(node, DictConfig) or node._is_none() or node._is_interpolation() or len(node) == 0:
            return False
        return all(only_added(node._get_node(key), f"{prefix}.{key}") for key in node)

    groups = {name.split("/")[0] for name in hydra.runtime.choices} | {
        name.split("@")[1].split(".")[0] for name in hydra.runtime.choices if "@" in name
    }
    sources = [Path(source.path) for source in hydra.runtime.config_sources if source.schema == "file"]
    known = sorted(str(key) for key in cfg if not only_added(cfg._get_node(key), str(key)))
    # `~seed +seed=7` replaces what a config put there (Hydra's way to swap a dict rather than merge into it):
    # the deleted key's root was the config's.
    known = sorted({*known, *(key.split(".")[0] for key in command_line_deletes())})
    for key in adds:
        root = key.split(".")[0]
        if key in RETIRED_KEYS:  # `+attribute_order=[..]`: what replaced it, not "unknown"
            raise ChipadaptError(f"{key}: {RETIRED_KEYS[key]}")
        if root in known or root in groups or root == "hydra" or any((path / root).is_dir() for path in sources):
            continue
        near = difflib.get_close_matches(root, known, n=1)
        hint = f"; did you mean {near[0]}{key[len(root) :]}?" if near else ""
        raise ChipadaptError(
            f"{key}: unknown key (conf/{hydra.job.config_name}.yaml and its groups have no `{root}`{hint})"
        )


def check_target_keys(node: DictConfig, where: str) -> None:
    """A key of a `_target_` config its target does not take (`+eval.perplexity.foo=1`, `+merge.method.foo=1`),
    named before any work: instantiating told it as Hydra's "Error in call to target" without the key's place,
    or as `ChipAlign() takes no arguments` without the key at all. A target that takes **kwargs, or that cannot
    be imported or inspected, is left to its instantiation to judge. Importing the target costs torch's import
    for most: validate asks only where the command line added a key to the node."""
    import inspect

    from hydra._internal.utils import _locate

    try:
        target = _locate(str(node["_target_"]))
        parameters = inspect.signature(target).parameters.values()
    except Exception:  # noqa: BLE001 (an unimportable or uninspectable target: instantiate tells it)
        return
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = [parameter.name for parameter in parameters if parameter.kind in named]
    for key in node:
        if str(key).startswith("_") or key in accepted:  # Hydra's own: _target_, _partial_, _recursive_, ...
            continue
        near = difflib.get_close_matches(str(key), accepted, n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        takes = f"takes {', '.join(accepted)}" if accepted else "takes no settings"
        raise ChipadaptError(f"{where}.{key}: unknown key ({hint}{node['_target_']} {takes})")


def validate(cfg: DictConfig) -> None:
    """Raise a ChipadaptError for the first problem found in the composed config."""
    check_added_root_keys(cfg)  # `+resum=false`: before any check reads what the typo meant to set
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
    check_root_values(cfg)
    # A refusal of what the command line asks stays before torch's import (merge.py's of its output): a
    # target is imported to read what it takes only where the command line added a key to its config.
    adds = command_line_adds(forced=True)
    targets = {
        f"eval.{task}": node for task, node in (cfg.eval.items() if isinstance(cfg.get("eval"), DictConfig) else ())
    }
    targets["merge.method"] = OmegaConf.select(cfg, "merge.method", default=None)
    for where, node in targets.items():
        if isinstance(node, DictConfig) and "_target_" in node and any(key.startswith(f"{where}.") for key in adds):
            check_target_keys(node, where)
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
