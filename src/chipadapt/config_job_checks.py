"""Checks of what a job asks for beyond one group's types: the root `device`, each evaluation task's
counts, the metric a sweep optimizes, a tokenizer the stage would not use, and FSDP's strategy settings."""

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from chipadapt.config_groups import FSDPStrategySchema
from chipadapt.config_typing import bounded_number, true_or_false, typed_group, whole_in_place
from chipadapt.errors import ChipadaptError
from chipadapt.eval.presets import check_preset

FSDP_STRATEGY = "chipadapt.scaleout.strategies.fsdp_strategy"


def check_fsdp_strategy(trainer: DictConfig) -> None:
    """Typed like a group; the values OmegaConf converts are written back (`load_on_rank0=off` is
    false here, and would be a true string to the strategy)."""
    strategy = trainer.get("strategy")
    if not isinstance(strategy, DictConfig) or strategy.get("_target_") != FSDP_STRATEGY:
        return
    for key, value in typed_group("trainer.strategy", FSDPStrategySchema, strategy).items():
        strategy[key] = value


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
    # perplexity's limits: a 0 would be taken as no limit (falsy), a negative one cut each document short
    "max_length": 1,
    "max_documents": 1,
    "max_tokens": 1,
    "max_tokens_per_document": 1,
    "max_chars_per_document": 1,
}
# Counts without a "no limit": the window of context a task scores (eval/task_base.fit_to_context).
EVAL_COUNTS_NOT_NULL = ("max_length",)
# An evaluation task's switches, true or false: `chat=maybe` was a true string.
EVAL_FLAGS = ("chat", "references_only", "answer_without_context")


def check_eval(tasks: DictConfig) -> None:
    """Each task's counts, so that `eval.mcq.limit=abc` names the key rather than a failed instantiation."""
    for task, node in tasks.items():
        if not isinstance(node, DictConfig):
            continue
        for key, low in EVAL_COUNTS.items():
            value = node.get(key)
            if value is None and key in node and key in EVAL_COUNTS_NOT_NULL:
                raise ChipadaptError(f"eval.{task}.{key}: null is not a whole number >= {low}")
            if value is None:
                continue
            value = whole_in_place(node, key)  # `limit=1e3`
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ChipadaptError(f"eval.{task}.{key}: {value!r} is not a whole number >= {low}")
        for key in EVAL_FLAGS:
            if key in node:
                true_or_false(node, key, f"eval.{task}.{key}")
        if node.get("temperature") is not None:  # a negative one was taken as greedy without a word
            bounded_number(f"eval.{task}.temperature", node.temperature, 0)
        check_held_out(task, node.get("splits"))
        check_task_preset(task, node)


def check_task_preset(task: str, node: DictConfig) -> None:
    """A task's `preset`, named by the key the user set: `${preset}` (conf/eval/mcq.yaml) is the root
    `preset=`, which was told as `eval.mcq.preset`."""
    try:
        preset = node.get("preset")
    except InterpolationResolutionError:  # no root `preset` to take it from: the task says so when built
        return
    if preset is not None:
        check_preset(preset, "preset" if OmegaConf.is_interpolation(node, "preset") else f"eval.{task}.preset")


def check_root_values(cfg: DictConfig) -> None:
    """Root settings of evaluate.py and merge.py, after their types (config_schema.ROOT_TYPES): `preset`, which
    only mcq and ifeval read (`preset=nope eval=[perplexity]` was recorded as the job's setting), and
    `max_shard_bytes` (0 or less wrote one shard per tensor)."""
    if cfg.get("preset") is not None:
        check_preset(cfg.preset, "preset")
    size = cfg.get("max_shard_bytes")
    if isinstance(size, int) and not isinstance(size, bool) and size < 1:
        raise ChipadaptError(f"max_shard_bytes: {size} is not a size in bytes >= 1")


def check_held_out(task: str, splits) -> None:
    """Perplexity's `splits.<name>.held_out`: the share of documents DAPT held out, in (0, 1], or null for
    every document (a 0 was taken as null; 1.5 as all)."""
    if not isinstance(splits, DictConfig):
        return
    for name, split in splits.items():
        fraction = split.get("held_out") if isinstance(split, DictConfig) else None
        if fraction is not None:
            key = f"eval.{task}.splits.{name}.held_out"
            bounded_number(key, fraction, 0, 1, low_open=True)


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
            f"add its task to eval: eval=[{','.join([*tasks, str(metric).split('.')[0]])}]"
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


def passage_source_paths(cfg: DictConfig) -> list[tuple[str, str]]:
    """(config key, path) of each folder passages are built from: `eval.<task>.build` (eval=retrieval),
    `eval.<task>.retrieval.build` (rag_qa), chat's `retrieval.build` and stage=retriever's `passages`, each
    where no passages file replaces it. A run folder inside one was indexed with the documents: its log,
    manifest and results became passages of the next run (run_folder_guard refuses it before Hydra writes)."""
    sections = []  # (passages file key, build key)
    tasks = cfg.get("eval")
    for task in list(tasks) if isinstance(tasks, DictConfig) else []:
        sections += [(f"eval.{task}.passages", f"eval.{task}.build")]
        sections += [(f"eval.{task}.retrieval.passages", f"eval.{task}.retrieval.build")]
    sections.append(("retrieval.passages", "retrieval.build"))
    if OmegaConf.select(cfg, "stage.name", throw_on_missing=False) == "retriever":
        sections.append(("retriever.passages", "passages"))
    found = []
    for file_key, build_key in sections:
        try:
            replaced = OmegaConf.select(cfg, file_key, throw_on_missing=False)
            sources = OmegaConf.select(cfg, f"{build_key}.sources", throw_on_missing=False)
            if replaced or not isinstance(sources, DictConfig):
                continue
            for name in sources:
                path = OmegaConf.select(cfg, f"{build_key}.sources.{name}.path", throw_on_missing=False)
                if isinstance(path, str) and path:
                    found.append((f"{build_key}.sources.{name}.path", path))
        except Exception:  # noqa: BLE001 (an interpolation that needs the job: the task checks it later)
            continue
    return found
