"""A Hydra callback that checks every value of a sweep before its first job runs.

Each job validates its own config (config_schema.validate), but a sweep's jobs run one after another:
with `optim.lr=1e-3,abc` or `merge.lam=0.5,1.5`, job 0 trains or merges to the end before job 1 finds
its bad value. Here each listed value of each swept key is composed (the other swept keys at their
first value) and validated at the sweep's start, so a bad one stops the sweep in one line before any
work. An interval an optimizer draws from (Optuna's `interval(...)`, from the command line or the preset's
hydra.sweeper.params) is checked at its ends and midpoint, for its order and log scale, and a whole-number key
for whole ends; so is the metric's fit to the stage, and a search's n_trials. An Optuna direction that
contradicts the sense of `optimized_metric` is refused too, and so is a merge sweep one of whose jobs would
find a merge of other settings in its folder (REPLACED_JOB_CHECKS).
Each training job's batch plan is checked as its run would check it, with the processes the launcher
gives it (check_job_plan); under hydra/launcher=slurm the first job too, which would otherwise fail only
once its nodes are allocated."""

import logging
import shutil
import sys

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from chipadapt.errors import ChipadaptError

log = logging.getLogger(__name__)
MAX_CHECKED = 64  # values composed at most (each takes a fraction of a second)


def job_override_sets(task_overrides: list[str]) -> list[tuple[str | None, list[str]]]:
    """The first job's overrides (every swept key at its first value; None for what was swept), then
    (the swept value, the job's overrides) for each further listed value of each swept key, the other
    swept keys at their first value."""
    # With the config loader: a `glob(...)` sweep over a config group lists that group's options.
    hydra = GlobalHydra.instance()
    loader = hydra.config_loader() if hydra.is_initialized() else None
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(task_overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    swept = [o for o in parsed if o.is_sweep_override()]
    values = {id(o): [f"{o.get_key_element()}={v}" for v in swept_values(o)] for o in swept}
    first = {id(o): values[id(o)][:1] for o in swept}
    sets: list[tuple[str | None, list[str]]] = [(None, [*fixed, *(line for o in swept for line in first[id(o)])])]
    for override in swept:
        others = [line for o in swept if o is not override for line in first[id(o)]]
        sets.extend((line, [*fixed, *others, line]) for line in values[id(override)][1:])
    return sets[:MAX_CHECKED]


def swept_values(override) -> list:
    """The values of a swept key to check: each listed one, or an interval's ends and midpoint (what an
    optimizer may draw, composed and validated as a listed value would be). A reversed interval, or a log
    one that reaches 0, is refused here: Optuna would raise it as a traceback."""
    if not override.is_interval_sweep():
        return list(override.sweep_string_iterator())
    sweep, key = override.value(), override.get_key_element()
    low, high = sweep.start, sweep.end
    if low > high:
        raise ChipadaptError(
            f"{key}=interval({low}, {high}): its low end is above its high end; write interval({high}, {low})"
        )
    if "log" in sweep.tags and low <= 0:
        raise ChipadaptError(f"{key}=tag(log, interval({low}, {high})): a log scale needs a low end above 0")
    whole = isinstance(low, int) and isinstance(high, int)
    middle = (low + high) // 2 if whole else (low + high) / 2
    return [low, middle, high]


def searched_lines(config: DictConfig) -> list[str]:
    """A search's keys and values as the Optuna sweeper reads them: hydra.sweeper.params, then the command
    line's overrides (which win over a preset's params of the same key)."""
    params = config.hydra.sweeper.get("params") if is_optuna_search(config.hydra) else None
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    task = [str(line) for line in config.hydra.overrides.task]
    named = {line.split("=", 1)[0] for line in task}
    return [line for line in lines if line.split("=", 1)[0] not in named] + task


def check_int_intervals(config: DictConfig, first_job: DictConfig) -> None:
    """A key whose value is a whole number searched over an interval (`interval(0.5, 2.5)`; Hydra parses
    `interval(0, 3)` as floats too): Optuna draws fractions, which the job takes as a fractional count.
    Checked against the value the key has without the search."""
    parsed = OverridesParser.create().parse_overrides(searched_lines(config))
    for override in parsed:
        if not override.is_interval_sweep():
            continue
        key, sweep = override.get_key_element(), override.value()
        current = OmegaConf.select(first_job, key, default=None, throw_on_missing=False)
        whole = whole_number_key(key)
        if whole is None:
            whole = isinstance(current, int) and not isinstance(current, bool)
        if whole:
            if not (isinstance(sweep.start, int) and isinstance(sweep.end, int)):
                _refuse(
                    f"{key}=interval({sweep.start}, {sweep.end}): {key} is a whole number ({current}); "
                    "Hydra reads interval ends as fractions, so search it with range(low, high + 1) or choice(...)"
                )


def check_metric_of_stage(job: DictConfig) -> None:
    """A training job's `optimized_metric` of another stage (`stage=retriever hparams_search=dapt_optuna`):
    found missing only after trial 0 trained to the end. A causal-LM run's metric is checked by the run's own
    check (its splits known once its data is), here for its form; a retriever's metrics are `retrieval.*`."""
    name, runner = job.get("optimized_metric"), OmegaConf.select(job, "stage.runner._target_")
    if not name or runner is None:
        return
    name = str(name)
    if runner == "chipadapt.stages.causal_lm.run":
        from chipadapt.stages.causal_lm import check_optimized_metric

        parts = name.split("/")
        check_optimized_metric(job, [parts[1]] if len(parts) == 3 and parts[0] == "val" else [])
    elif runner == "chipadapt.stages.retriever.run" and not name.startswith("retrieval."):
        raise ChipadaptError(
            f"optimized_metric: {name!r} is not a metric of stage={OmegaConf.select(job, 'stage.name')} "
            "(it records retrieval.<queries>.<encoder>.<measure>, e.g. retrieval.synthetic_heldout.finetuned.mrr@10)"
        )


def _target(node) -> str:
    return str(node.get("_target_") or "") if isinstance(node, DictConfig) else ""


def is_optuna_search(hydra: DictConfig) -> bool:
    """Whether the sweep is an Optuna search (Hydra's sweeper or chipadapt's, hydra/sweeper=chipadapt_optuna)."""
    return "optuna" in _target(hydra.get("sweeper")).lower()


def whole_number_key(key: str) -> bool | None:
    """Whether the typed schema (config_groups) takes `key` as a whole number, or None where it does not
    type the key (`optim.scheduler.*`, a group without a schema): the YAML's value tells then. A float key
    written `1` in its YAML is a float still."""
    from dataclasses import fields, is_dataclass
    from typing import get_args

    from chipadapt.config_groups import BlendSchema
    from chipadapt.config_schema import GROUPS

    group, *parts = key.split(".")
    kind = {**GROUPS, "data": BlendSchema}.get(group)
    for part in parts:
        kind = {spec.name: spec.type for spec in fields(kind)}.get(part) if is_dataclass(kind) else None
    if kind is None or not parts:
        return None
    kinds = {kind, *get_args(kind)}
    return True if int in kinds and float not in kinds else False if float in kinds else None


def check_sweeper_and_launcher(hydra: DictConfig) -> None:
    """What the Optuna sweeper and the SLURM launcher would otherwise raise as a traceback, after the
    sweep started: a direction that is not minimize/maximize, and no `sbatch` to submit with."""
    if is_optuna_search(hydra):
        directions = hydra.sweeper.get("direction")
        given = list(directions) if OmegaConf.is_list(directions) else [directions]
        bad = [d for d in given if str(d).lower() not in ("minimize", "maximize")]
        if bad:
            _refuse(f"hydra.sweeper.direction: {bad[0]!r} is not minimize or maximize")
        trials = hydra.sweeper.get("n_trials")
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            _refuse(f"hydra.sweeper.n_trials={trials}: a search runs 1 trial or more")
    if "slurm" in _target(hydra.get("launcher")).lower() and shutil.which("sbatch") is None:
        _refuse(
            "hydra/launcher=slurm: sbatch is not on this machine's PATH; submit from a SLURM login node, "
            "or leave hydra/launcher out to run the sweep here"
        )


def check_direction(config: DictConfig) -> None:
    """An Optuna search whose direction contradicts its metric's sense: `hparams_search=merge_lam_optuna
    optimized_metric=perplexity.domain.bpb` kept the preset's `maximize` and reported the worst lambda's
    bits per byte as the best, without a word. A metric of unknown sense is left to the user."""
    if not is_optuna_search(config.hydra):
        return
    name = config.get("optimized_metric")
    directions = config.hydra.sweeper.get("direction")
    given = list(directions) if OmegaConf.is_list(directions) else [directions]
    if not name or len(given) != 1:  # several directions: a multi-objective study, not one metric
        return
    from chipadapt.optimized_metric import better_direction  # here: it loads numpy, which only a search needs

    wanted, said = better_direction(str(name)), str(given[0]).lower()
    if wanted is None or said == wanted:
        return
    if wanted == "minimize":  # bits per byte, perplexity, a loss: certain from the name
        _refuse(
            f"hydra.sweeper.direction={said} but optimized_metric={name} is lower-is-better; "
            f"set hydra.sweeper.direction={wanted}"
        )
    # Higher-is-better is compare.py's rule for every other name, a misspelt one too (`val/domain/bpbb`),
    # which the run itself then names: a warning, not a refusal that would blame the wrong thing.
    log.warning(
        "hydra.sweeper.direction=%s: optimized_metric=%s is higher-is-better by compare.py's rule (its name has "
        "no bpb, ppl or loss), so this search seeks its lowest value; set hydra.sweeper.direction=maximize if "
        "that is not meant",
        said,
        name,
    )


# Commands whose jobs would be refused for what their folders hold from a sweep of other settings,
# by a check of all of them before the first one runs (module:function(config, sweep folder) -> why).
REPLACED_JOB_CHECKS = {"merge": "chipadapt.merge.sweep_rerun:replaced_job"}


def check_replaced_jobs(config: DictConfig, config_name: str | None) -> None:
    """A sweep of a command in REPLACED_JOB_CHECKS, refused before its first job where a job would be."""
    import importlib
    import os
    from pathlib import Path

    target = REPLACED_JOB_CHECKS.get(str(config.hydra.job.get("name") or config_name))
    if target is None:
        return
    module, function = target.split(":")
    sweep = Path(os.path.abspath(Path(str(config.hydra.sweep.dir)).expanduser()))
    why = getattr(importlib.import_module(module), function)(config, sweep)
    if why:
        _refuse(why)


# Recipes that split data.global_batch_size over the run's processes (batch_plan.batch_plan); the others
# (retriever, reranker, tokenizer, ...) never read it.
BATCH_PLAN_RUNNERS = ("chipadapt.stages.causal_lm.run", "chipadapt.stages.attribute_model.run")


def slurm_resources(job: DictConfig) -> tuple[int, int, int] | None:
    """(nodes, tasks per node, GPUs per node) the SLURM launcher asks for this job, as it resolves them
    (they follow the trainer unless hydra.launcher.* sets them); None for a launcher that runs jobs here."""
    launcher = job.hydra.get("launcher")
    if "slurm" not in _target(launcher).lower():
        return None
    return int(launcher.nodes), int(launcher.tasks_per_node), int(launcher.get("gpus_per_node") or 0)


def as_on_its_nodes(job: DictConfig, remote: bool) -> DictConfig:
    """`job` as its checks may judge it here: a job submitted to other nodes (SLURM) asks for GPUs those nodes
    have, so `device=cuda` is checked for its form only (as `cpu`), not against this login node's GPUs."""
    device = job.get("device") if remote else None
    if isinstance(device, str) and device.startswith("cuda"):
        with open_dict(job):
            job.device = "cpu"
    return job


def check_job_plan(job: DictConfig) -> None:
    """What a training job's run refuses once started, checked for the job as it will be launched: its
    `trainer.devices`, and its batch plan (global batch = micro x processes x accumulation) with the
    processes the job will have. Under SLURM that is nodes x tasks per node (one process per task, as
    Lightning's SLURM environment makes them), not what this login node would give, and the devices a
    task uses must be among the GPUs asked for per node."""
    from chipadapt.batch_plan import batch_plan
    from chipadapt.trainer_schema import check_devices, check_gpu_count

    trainer, data = job.get("trainer"), job.get("data")
    if not isinstance(trainer, DictConfig) or OmegaConf.select(job, "stage.runner._target_") not in BATCH_PLAN_RUNNERS:
        return
    check_devices(trainer.get("devices"))
    resources = slurm_resources(job)
    if resources is None:  # the jobs run on this machine: the plan the run itself makes
        batch_plan(data, trainer)
        return
    nodes, tasks, gpus = resources
    if gpus >= 1 and str(trainer.get("accelerator")).lower() != "cpu":
        check_gpu_count(trainer.devices, gpus)
    # A plain count on the CPU accelerator: `tasks` processes per node whatever this machine has.
    launched = OmegaConf.create({"accelerator": "cpu", "devices": tasks, "num_nodes": nodes})
    try:
        batch_plan(data, launched)
    except ChipadaptError as err:
        raise ChipadaptError(f"{err} (hydra/launcher=slurm: {nodes} nodes x {tasks} tasks per node)") from None


class SweepPreflight(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if "slurm" in _target(config.hydra.get("launcher")).lower():
            log.warning("hydra/launcher=slurm launches sweeps (-m) only: this run goes on here, on this machine")

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs) -> None:
        from chipadapt.cli import describe_hydra_error
        from chipadapt.config_schema import validate

        check_sweeper_and_launcher(config.hydra)
        check_direction(config)

        task = searched_lines(config)
        loader = GlobalHydra.instance().config_loader()
        hydra_config = HydraConfig.instance()
        previous = hydra_config.cfg
        try:
            sets = job_override_sets(task)
        except ChipadaptError as err:  # a bad interval
            _refuse(str(err))
        except Exception:  # noqa: BLE001 (a sweep this check cannot expand: its jobs check themselves)
            log.debug("sweep values not listed before the sweep", exc_info=True)
            return
        remote = "slurm" in _target(config.hydra.get("launcher")).lower()
        searched = is_optuna_search(config.hydra)  # trial 0 need not draw the first values
        if any("interval(" in line for line in task):
            check_int_intervals(config, loader.load_sweep_config(config, [line for line in task if "(" not in line]))
        for swept, overrides in sets:
            try:
                job = loader.load_sweep_config(config, overrides)
                # What run_job sets before a job's config is resolved (`${hydra:runtime.output_dir}`).
                with read_write(job.hydra.runtime), open_dict(job.hydra.runtime):
                    job.hydra.runtime.output_dir = str(config.hydra.sweep.dir)
                hydra_config.set_config(job)
                validate(as_on_its_nodes(OmegaConf.masked_copy(job, [key for key in job if key != "hydra"]), remote))
                check_job_plan(job)
                check_metric_of_stage(job)
            except Exception as err:  # noqa: BLE001 (a composition error is the user's; anything else the job reports)
                described = str(err) if isinstance(err, ChipadaptError) else describe_hydra_error(err)
                if swept is None and described is not None and (remote or searched):
                    # Submitted, it would fail only once its nodes are allocated, after its wait in the queue.
                    _refuse(f"{described} (job #0 of the sweep, {' '.join(overrides) or 'no overrides'})")
                if swept is None:  # the first job's own problem: it stops that job at once, in its own words
                    log.debug("sweep values not checked before the sweep", exc_info=True)
                    return
                if described is None:  # not the user's input: the job meets it and reports it whole
                    log.debug("sweep value %s not checked before the sweep", swept, exc_info=True)
                    continue
                _refuse(f"{described} (sweep value {swept})")
            finally:
                hydra_config.cfg = previous
        # Last: valid values, each job composed as it will run.
        check_replaced_jobs(config, config_name)


def _refuse(message: str) -> None:
    print(f"chipadapt: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
