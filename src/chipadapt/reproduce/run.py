"""reproduce.py: run the configured steps that are not done, then build REPORT.md from their folders."""

import logging
import shlex
import struct
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.markup import escape

from chipadapt.errors import ChipadaptError
from chipadapt.models.gguf_import import GgufPackageModel, gguf_pre_tokenizer_name, package_folder
from chipadapt.models.hf_folder import resolve_model_folder
from chipadapt.report import console
from chipadapt.reproduce.ledger import Ledger, now_versions, use_model_pre_tokenizer
from chipadapt.reproduce.report_models import report_models, report_rebuilds
from chipadapt.reproduce.runner import completed, plan, resolved_command, run_steps
from chipadapt.reproduce.step_process import ROOT
from chipadapt.reproduce.steps import check_chip_dapt, load_steps

log = logging.getLogger(__name__)
REPORT = "report"  # not a step: `only=[report]` rebuilds the report from the folders and runs no step


def from_root(path: str) -> Path:
    """Relative paths in the config are taken from the repository, where the steps run."""
    return Path(path) if Path(path).is_absolute() else (ROOT / path).resolve()


def model_pre_tokenizer(cfg: DictConfig) -> str | None:
    """The `tokenizer.ggml.pre` of the GGUF package the reproduction's model is converted from; None for a
    model given by folder (model.path, a Hugging Face folder) or a GGUF whose header cannot be read."""
    if cfg.model.path or cfg.model.source is None:
        return None
    source = instantiate(cfg.model.source)
    if not isinstance(source, GgufPackageModel):
        return None
    try:
        return gguf_pre_tokenizer_name(package_folder(source.package) / source.gguf_file)
    except (ChipadaptError, ValueError, KeyError, OSError, struct.error):
        return None  # converting it says why


def print_plan(steps, out: Path, only: set[str], force: set[str], models: bool) -> None:
    ledger = Ledger(out / "steps.json")
    if only == {REPORT}:  # an empty `only` would mean every step
        for step in report_rebuilds(steps, out) if models else []:
            console.print(f"[bold]rebuild[/bold] {step.name}: its model, which the report reads", highlight=False)
        console.print(
            f"[bold]report[/bold]: rebuilt from the run folders {escape('(only=[report])')}; no step runs",
            highlight=False,
        )
        return
    only = only - {REPORT}
    for step, action in plan(steps, ledger, out, only, force):
        # With the chosen settings when the candidates are done; otherwise the command before its choice.
        command = resolved_command(step, steps, out, completed(ledger)) or step.command(out)
        pending = (
            " (+ settings chosen when its candidates are done)" if step.choose and command == step.command(out) else ""
        )
        code = ledger.other_code(step.name, step.code_scope) if action in ("run", "rerun") else None
        if code:  # the command alone would not say why a step that completed runs again
            pending += f" (rerun: recorded with {code}; now {now_versions()})"
        # Quoted for a shell and never wrapped: each command can be pasted to run that step by hand.
        console.print(
            f"[bold]{action:>6}[/bold] {step.name}: python {escape(shlex.join(command))}{pending}",
            highlight=False,
            soft_wrap=True,
        )
    planned = {step.name: action for step, action in plan(steps, ledger, out, only, force)}
    for step in report_rebuilds(steps, out) if models else []:
        if planned.get(step.name) in ("skip", "ignore"):  # otherwise the plan above runs or rebuilds it already
            console.print(f"[bold]rebuild[/bold] {step.name}: its model, which the report reads", highlight=False)


def step_names(cfg: DictConfig, key: str) -> set[str]:
    """`only`/`force` as a set of step names: a list, or one name (`only=report`, which was read as the
    list of its characters)."""
    value = cfg.get(key)
    if value is None:
        return set()
    if isinstance(value, str):
        return {value} if value else set()
    if isinstance(value, ListConfig) and all(isinstance(name, str) for name in value):
        return set(value)
    raise ChipadaptError(f"{key}: {value!r} is not a step name or a list of step names (e.g. {key}=[tokenizer,report])")


def run(cfg: DictConfig) -> Path:
    start = time.perf_counter()
    from chipadapt.io.outputs import check_output_folder

    # Before the model is converted (minutes), and in a dry run too (these write nothing): a report_dir the
    # real run refuses passed the dry run.
    only, force = step_names(cfg, "only"), step_names(cfg, "force")
    check_chip_dapt(cfg)  # load_steps checks it too, after the conversion
    out = from_root(cfg.out)
    report_dir = check_output_folder(
        from_root(cfg.report_dir), "reproduce", "report_dir", overwrite=True, inputs=[("out", out)]
    )
    # Every merge and evaluation names the general model by folder: materialise it once, here. A dry
    # run builds nothing, so it names the folder the model will be converted into.
    if cfg.dry_run and not cfg.model.path and cfg.model.source is not None:
        base_model = instantiate(cfg.model.source).folder
    else:
        base_model = resolve_model_folder(cfg.model)
    OmegaConf.update(cfg, "base_model", str(base_model))
    use_model_pre_tokenizer(model_pre_tokenizer(cfg))  # the conversion version the ledger stamps
    steps = load_steps(cfg)
    if cfg.resume_from:  # records only, into a folder without a ledger: a dry run shows the plan after it
        from chipadapt.reproduce.restore import restore

        restore(from_root(cfg.resume_from), out)
    if cfg.dry_run:
        print_plan(steps, out, only, force, cfg.report_models)
        return out
    from chipadapt.io.lock import cache_entry_lock
    from chipadapt.io.outputs import publish_folder
    from chipadapt.job import recorded_job
    from chipadapt.reproduce.report.build import build_report  # matplotlib only when a report is made

    # The report folder is rebuilt from the run folders whenever asked (it is derived, and committed),
    # but a folder that reproduce.py did not write is never written into (check_output_folder above). It is
    # built beside the old one and swapped in whole: no records of an earlier build (another `out`, steps
    # since dropped) stay mixed into it, and a failed build leaves the previous report as it was.
    # Each step writes its own manifest in <out>/<step>/; this one records the reproduction as a whole.
    with recorded_job(cfg, "reproduce", out) as manifest:
        # First, so that a rebuilt model that differs puts the steps built on it out of date before they are planned.
        if cfg.report_models:
            report_models(steps, out)
        else:
            log.info("report_models=false: the report is built from the records alone")
        if only != {REPORT}:
            run_steps(steps, out, only - {REPORT}, force)
        # Two reproductions of one variant on one day share the default report_dir: one swaps at a time.
        with cache_entry_lock(report_dir), publish_folder(report_dir, "reproduce") as staging:
            built = build_report(cfg, steps, out, staging, final=report_dir)
        path = report_dir / built.name
        manifest.update("results", {"report": str(path)})
    console.print(f"[bold green]report:[/bold green] {path}  ({time.perf_counter() - start:.0f} s in this invocation)")
    return path
