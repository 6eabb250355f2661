"""The runs compare.py reads: train, evaluate and merge run folders, multirun roots (every job folder
below them), results.json files and globs of any of these. Each run comes with its kind, its status
(a "running" one whose folder lock nobody holds was killed: "stopped"), its overrides and its metrics
by name (`chipadapt.run_metrics`), from its manifest.json; folders written before manifests existed are
read from results.json and .hydra/overrides.yaml."""

import glob
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from chipadapt.errors import ChipadaptError
from chipadapt.io.jsonl import json_object
from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.run_metrics import evaluation_metrics, evaluation_uncertainty, run_metrics, run_results

RECORDS = ("manifest.json", "results.json")
STOPPED = "stopped"  # recorded "running", but no live process holds its folder lock


@dataclass
class Run:
    folder: Path
    kind: str  # train | evaluate | merge | ...
    status: str | None
    overrides: dict[str, str]
    metrics: dict[str, float]
    label: str = ""
    label_keys: list[str] = field(default_factory=list)  # the overrides the label shows ([]: given, or the folder)
    extra: dict = field(default_factory=dict)  # room for per-kind data a comparison may need
    # {metric: {"ci": [low, high] or None, "n": items}} where the results carry them (evaluations)
    uncertainty: dict = field(default_factory=dict)


def is_run(folder: Path) -> bool:
    return any((folder / name).is_file() for name in RECORDS)


def _job_sort_key(folder: Path):
    return (0, int(folder.name), "") if folder.name.isdigit() else (1, 0, folder.name)


def find_run_folders(patterns: list[str]) -> list[Path]:
    """Run folders in the order given; a multirun root stands for its job folders (0, 1, 2 ...)."""
    folders = []
    for pattern in patterns:
        matches = [Path(p) for p in sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))]
        if not matches:
            raise ChipadaptError(
                f"compare.runs: nothing matches {pattern!r} (a run folder, a multirun folder, a results.json or a glob)"
            )
        for match in matches:
            if match.is_file():
                if match.name in RECORDS:  # a glob over a sweep also matches multirun.yaml, sweep_report.csv ...
                    folders.append(match.parent)
            elif is_run(match):
                folders.append(match)
            else:
                jobs = (
                    sorted((p for p in match.iterdir() if p.is_dir() and is_run(p)), key=_job_sort_key)
                    if match.is_dir()
                    else []
                )
                if not jobs and len(matches) == 1:
                    raise ChipadaptError(
                        f"compare.runs: {match} holds no run "
                        "(no manifest.json or results.json in it or in its sub-folders)"
                    )
                folders += jobs
    return list(dict.fromkeys(folders))


def parse_overrides(items: list[str]) -> dict[str, str]:
    """`["optim.lr=1e-4", "+data.x=1", "hydra.run.dir=..."]` -> {"optim.lr": "1e-4", "data.x": "1"}
    (Hydra's own left out)."""
    pairs = {}
    for item in items or []:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        if not key.startswith("hydra.") and not key.startswith("hydra/"):
            pairs[key] = value
    return pairs


def _hydra_overrides(folder: Path) -> dict[str, str]:
    file = folder / ".hydra" / "overrides.yaml"
    return parse_overrides(yaml.safe_load(file.read_text()) or []) if file.is_file() else {}


def run_status(folder: Path, recorded: str | None) -> str | None:
    """The manifest's status, except that a "running" job whose folder lock no live process holds
    stopped without finishing (killed: SIGKILL and power loss leave no chance to record it)."""
    if recorded == "running" and folder_lock_held(folder) is False:
        return STOPPED
    return recorded


def trained_budget(manifest: dict) -> tuple[int, int | None] | None:
    """(optimizer steps, tokens) a training run trained for, from its manifest: the final global_step and
    that many steps of its plan's tokens a step; None where it records no step (a run that never finished).
    Runs of one sweep can differ in them (trainer.max_epochs stops a trial whose blend holds fewer steps
    than trainer.max_steps), and their figures then compare unequal budgets."""
    steps = (manifest.get("metrics") or {}).get("global_step")
    if isinstance(steps, bool) or not isinstance(steps, int):
        return None
    plan = manifest.get("plan") or {}
    planned, tokens = plan.get("steps"), plan.get("tokens")
    if isinstance(planned, int) and planned > 0 and isinstance(tokens, int):
        return steps, steps * (tokens // planned)
    return steps, None


def load_run(folder: Path) -> Run:
    manifest_file = folder / "manifest.json"
    if manifest_file.is_file():
        manifest = json_object(manifest_file)
        metrics, results = run_metrics(manifest), run_results(manifest)
        if (
            not metrics and (folder / "results.json").is_file()
        ):  # an evaluation recorded before results moved into manifests
            results = json_object(folder / "results.json")
            metrics = evaluation_metrics(results)
        overrides = parse_overrides(manifest["overrides"]) if "overrides" in manifest else _hydra_overrides(folder)
        run = Run(folder, manifest.get("kind", "train"), run_status(folder, manifest.get("status")), overrides, metrics)
        run.extra["group_names"] = group_names(manifest.get("config"))
        if run.kind == "train":  # what its validation read (eval/compare_validation.py)
            run.extra["val_text"] = (manifest.get("data") or {}).get("val_text")
            # Resumes that went on validating on other text (stages/common.py StartingMetrics).
            run.extra["validation_changes"] = (manifest.get("data") or {}).get("validation_changes") or []
            run.extra["config"] = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
            run.extra["trained"] = trained_budget(manifest)
    else:
        results = json_object(folder / "results.json")
        run = Run(folder, "evaluate", None, _hydra_overrides(folder), evaluation_metrics(results))
    run.uncertainty = {k: v for k, v in evaluation_uncertainty(results).items() if k in run.metrics}
    return run


def group_names(config: object) -> dict[str, str]:
    """{group: the `name` its option records} of a run's resolved config (`tokenizer: {name: base, ...}`)."""
    config = config if isinstance(config, dict) else {}
    return {k: v["name"] for k, v in config.items() if isinstance(v, dict) and isinstance(v.get("name"), str)}


def implied_choices(runs: list[Run], differing: set[str]) -> None:
    """Label values of the group choices a run did not override (an experiment's or the default's) where
    another run's label names that group: `tokenizer=augmented_small` beside `tokenizer=base`, not the folder
    name. Taken from the `name` the run's config records for the group, and only for a group whose every
    override names the option by that same name (model=smollm2_135m records another name)."""
    for key in sorted(k for k in differing if "." not in k):
        chosen = [run for run in runs if key in run.overrides]
        if not all(run.extra.get("group_names", {}).get(key) == run.overrides[key] for run in chosen):
            continue
        for run in runs:
            name = run.extra.get("group_names", {}).get(key)
            if key not in run.overrides and name is not None:
                run.extra.setdefault("label_values", {})[key] = name


def label_values(run: Run) -> dict[str, str]:
    """The values a run's label shows: its overrides and the group choices implied_choices found."""
    return {**run.overrides, **run.extra.get("label_values", {})}  # implied only where no override


def label_runs(runs: list[Run], labels: list[str] | None) -> None:
    """Given labels (one per run), else the overrides that differ between the runs (all of them for a
    single run; a group one run set and another took from its experiment or the defaults, by the option's
    name: implied_choices), else the folder name."""
    if labels is not None and len(labels) != len(runs):
        # Labels are matched to runs by position: with a count that differs, some run would carry another's.
        raise ChipadaptError(
            f"compare.labels: {len(labels)} given for {len(runs)} runs (one per run, in the order runs= finds them)"
        )
    differing = (
        {key for key in {k for r in runs for k in r.overrides} if len({r.overrides.get(key) for r in runs}) > 1}
        if len(runs) > 1
        else None
    )
    if differing and labels is None:
        implied_choices(runs, differing)
    for i, run in enumerate(runs):
        if labels is not None:
            run.label, run.label_keys = labels[i], []
            continue
        shown = {k: v for k, v in label_values(run).items() if differing is None or k in differing}
        run.label = " ".join(f"{k}={v}" for k, v in shown.items()) or run.folder.name
        run.label_keys = list(shown)


def load_runs(patterns: list[str], labels: list[str] | None = None) -> list[Run]:
    runs = [load_run(folder) for folder in find_run_folders(patterns)]
    if not runs:
        raise ChipadaptError(f"compare.runs: no run folder in {patterns}")
    label_runs(runs, labels)
    return runs


def swept_keys(runs: list[Run]) -> list[str]:
    """Overrides whose value differs between the runs: what the sweep varied."""
    keys = dict.fromkeys(k for r in runs for k in r.overrides)
    return [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]
