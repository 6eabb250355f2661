"""train.py refuses, before any work, a command-line override of what its stage never reads
(run_settings.NOT_READ): `stage=retriever peft=lora_small` trained without LoRA while the run recorded it,
and the user took it for applied. Only the user's own overrides count (hydra.overrides.task), not what an
experiment preset or the stage composes; a group choice that is the stage's own default changes nothing
and passes (`peft=none`)."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.run_settings import READ_THROUGH, is_unread

# What a refusal names, where the key alone would not say what the group is.
WHAT = {
    "peft": "peft (LoRA)",
    "loss_guard": "loss_guard (the skipping of outlying steps)",
    "tokenizer": "it: its models keep their own tokenizers",
    "model": "model (the causal LM)",
    "eval": "eval (train.py reads only eval.eda_script.eval_fraction; evaluate with evaluate.py)",
}
# The same, where what it says is true of one stage only: looked up first.
WHAT_IN_STAGE = {
    "attribute_model": {
        "model.dtype": "model.dtype (the attribute model trains in float32)",
        "model.gradient_checkpointing": "model.gradient_checkpointing (the attribute model keeps its activations)",
        "model.attn_implementation": "model.attn_implementation (the attribute model loads with transformers' default)",
    },
    "annotate": {"model": "model (it rates with the attribute model at annotate.attribute_model)"},
}


def what(key: str, stage: str) -> str:
    """What a refusal of `key` at `stage` names: the key, said plainly where it alone would not say it."""
    own = WHAT_IN_STAGE.get(stage, {})
    group = key.split(".")[0]
    return own.get(key) or WHAT.get(key) or own.get(group) or WHAT.get(group) or key


def check_stage_reads(cfg: DictConfig) -> None:
    """Raise a ChipadaptError naming the first override of `cfg`'s stage that the stage never reads."""
    stage = OmegaConf.select(cfg, "stage.name")
    hydra = _hydra_config(cfg)
    if stage is None or hydra is None:
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [str(text) for text in hydra.overrides.task]
    conf = _main_config_dir(hydra)
    defaults = default_choices(conf, str(stage)) if conf else {}
    for text, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides), strict=True):
        key = parsed.key_or_group.replace("/", ".")  # `data/template=chipnemo`: the key data.template
        if key.startswith("hydra") or key in READ_THROUGH or not is_unread(key, stage):
            continue
        is_group = "." not in key and conf is not None and (conf / key).is_dir()
        if is_group and not parsed.is_delete() and str(parsed.value()) == defaults.get(key):
            continue
        raise ChipadaptError(f"{text}: stage={stage} does not use {what(key, str(stage))}; remove it")


def _hydra_config(cfg: DictConfig) -> DictConfig | None:
    """The job's Hydra config: set while train.py runs, or composed into `cfg` (compose(return_hydra_config))."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return HydraConfig.get()
    hydra = cfg.get("hydra")
    return hydra if isinstance(hydra, DictConfig) else None


def _main_config_dir(hydra: DictConfig) -> Path | None:
    for source in hydra.runtime.get("config_sources") or []:
        if source.get("provider") == "main" and source.get("schema") == "file":
            return Path(source.path)
    return None


def default_choices(conf: Path, stage: str) -> dict[str, str]:
    """group -> the option a run of `stage` gets without a choice on the command line: train.yaml's, unless
    the stage's config overrides it (`override /optim: adamw_cosine`)."""
    choices = {}
    for path in (conf / "train.yaml", conf / "stage" / f"{stage}.yaml"):
        if not path.is_file():
            continue
        for entry in OmegaConf.load(path).get("defaults") or []:
            if isinstance(entry, DictConfig):
                for group, option in entry.items():
                    choices[str(group).removeprefix("override ").strip().lstrip("/")] = str(option)
    return choices
