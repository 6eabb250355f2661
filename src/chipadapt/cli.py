"""What every entry point (train, evaluate, merge, chat, compare, curate, reproduce) shares: Hydra
composes the config; what goes wrong in the user's input, at composition or later, comes out as one
`chipadapt: error:` line with exit status 2 and no traceback; SIGINT/SIGTERM end the run as
`interrupted` with status 128+signal, also between the jobs of a sweep. A run whose training diverged
is a failure told in one line (status 1); in a sweep the other jobs go on. Heavy modules are
imported only when a job runs, so `--help` and shell completion stay fast."""

import atexit
import importlib
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

import chipadapt  # noqa: F401  (registers the config resolvers)
from chipadapt import interrupts
from chipadapt.after_interruption import rerun_note, say_interrupted
from chipadapt.errors import USER_ERROR_STATUS, TrainingDiverged, exit_on_user_error, worst_for
from chipadapt.io.command_line import record_command
from chipadapt.io.disk_full import disk_full_error, disk_full_message
from chipadapt.io.launch_ranks import check_launch
from chipadapt.manifest import record_refusal
from chipadapt.run_folder_guard import restore_records_after_refusal
from chipadapt.run_folder_key import run_folder_key

DISK_FULL_STATUS = 1  # not the user's input: the status of any other failure, told in one line
# Training that diverged ran with settings that were valid: a failed run, not refused input (status 2
# would also put back the folder's records of its earlier run, when this run's failure is the record).
DIVERGED_STATUS = 1
DIVERGED = object()  # what run_job returns for a diverged job of a sweep
# What a rerun of the last job begun in this process does after an interruption (after_interruption.py).
# The last job's rerun note, and whether it completed (its manifest says so): the exit ignores stop signals
# only then (ignore_signals_at_exit).
_last_job: dict[str, Any] = {"rerun": None, "completed": False}
# The diverged jobs of a sweep run in this process ("#1 (optim.lr=10000.0)"): said again at its end.
_diverged_jobs: list[str] = []


def _one_line(text: str) -> str:
    """Hydra's and OmegaConf's multi-line messages, without their key/type footer, on one line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    kept = [
        line
        for line in lines
        if not line.startswith(
            ("full_key:", "object_type=", "reference_type=", "Config search path", "provider=", "Set the environment")
        )
    ]
    return "; ".join(kept).replace(":;", ":")


def _group_options(missing: str | None) -> list[str] | None:
    """The options of the group a missing config belongs to (`eval/nope` -> eval's); Hydra lists them
    for a single choice (`optim=nope`) but not for an entry of a list (`eval=[nope]`)."""
    if not missing or "/" not in missing:
        return None
    from hydra.core.global_hydra import GlobalHydra

    try:
        return GlobalHydra.instance().config_loader().get_group_options(missing.rsplit("/", 1)[0]) or None
    except Exception:  # noqa: BLE001 (no Hydra instance, or an unreadable search path: say what we can)
        return None


def yaml_error_line(err: BaseException) -> str | None:
    """A config file that is not YAML (`lr: [1, 2` in `--config-dir DIR`'s optim/bad.yaml), raised by PyYAML as
    Hydra composes: the file and line PyYAML stopped at, and its reason; None for any other error."""
    import yaml

    for cause in (err, err.__cause__, err.__context__):
        if isinstance(cause, yaml.MarkedYAMLError):
            mark = cause.problem_mark or cause.context_mark
            where = f"{mark.name}:{mark.line + 1}" if mark is not None else "a config file"
            reason = "; ".join(text for text in (cause.context, cause.problem) if text)
            return f"{where}: not valid YAML ({reason})"
        if isinstance(cause, yaml.YAMLError):
            return f"a config file is not valid YAML ({_one_line(cause)})"
    return None


def describe_hydra_error(err: BaseException) -> str | None:
    """A one-line description of a composition error (unknown group option, unknown key, bad
    override syntax, wrong type), or None for anything that is not the user's input."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException

    malformed = yaml_error_line(err)
    if malformed is not None:
        return malformed
    if isinstance(err, ValueError) and str(err).startswith("Only one of --run, --multirun"):
        return f"{err} (a sweep's config shows with --cfg job or --cfg hydra, without -m)"
    if isinstance(err, OverrideParseException):
        return f"{err.override}: not a valid override ({_one_line(err.message).split('; See https')[0]})"
    if isinstance(err, MissingConfigException):
        options = getattr(err, "options", None) or _group_options(getattr(err, "missing_cfg_file", None))
        text = _one_line(err.args[0] if err.args else err).split("; Available options")[0]
        return f"{text} (available: {', '.join(options)})" if options else text
    if isinstance(err, (HydraException, OmegaConfBaseException)):
        from chipadapt.config_schema import RETIRED_KEYS

        for key, replaced in RETIRED_KEYS.items():
            if f"'{key}'" in str(err):  # "Could not override 'data.val_max_sequences'"
                return f"{key}: {replaced}"
        cause = err.__cause__
        text = _one_line(err)
        if isinstance(cause, OmegaConfBaseException) and str(cause) not in str(err):
            text = f"{text}: {_one_line(cause)}"
        return text
    return None


def _report_in_one_line(func: Callable[[], Any]) -> Any:
    """Replaces hydra's run_and_report: user errors as one line (HYDRA_FULL_ERROR=1 shows them whole)."""
    try:
        return func()
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        described = describe_hydra_error(err)
        if described is None:
            raise
        print(f"chipadapt: error: {described}", file=sys.stderr, flush=True)
        sys.exit(USER_ERROR_STATUS)


def in_one_line(func: Callable[[], Any]) -> Any:
    """`func()` with the user's errors told as the entry points tell them: for a script that composes its
    config itself (benchmarks/_config.py), where Hydra's traceback reached the user."""
    return _report_in_one_line(func)


def _install_hydra_reporter() -> None:
    import hydra._internal.utils as hydra_utils

    hydra_utils.run_and_report = _report_in_one_line


def exit_if_disk_full(err: BaseException) -> None:
    """A full disk or quota behind `err`: one line naming the file, exit status 1 (else return)."""
    if disk_full_error(err) is None:
        return
    logging.raiseExceptions = False  # the log file cannot be written either: no "Logging error" dumps
    print(f"chipadapt: error: {disk_full_message(err)}", file=sys.stderr, flush=True)
    sys.exit(DISK_FULL_STATUS)


def run_job(target: str, cfg: DictConfig, *args: Any) -> Any:
    """Run `module:function` on the composed config: validated first, user errors as one line,
    a signal as a clean `interrupted` exit."""
    interrupts.install()
    _last_job["rerun"] = rerun_note(target, cfg, run_folder_key())
    _last_job["completed"] = False
    module_name, function_name = target.split(":")
    try:
        from chipadapt.config_schema import validate

        # Before any of the job's code asks its rank (many places do, some outside exit_on_user_error).
        exit_on_user_error(check_launch)
        exit_on_user_error(validate, cfg)
        function = getattr(importlib.import_module(module_name), function_name)
        returned = exit_on_user_error(_naming_target_keys, function, cfg, *args)
        if job_completed():
            _last_job["completed"] = True
            atexit.unregister(ignore_signals_at_exit)  # once, however many jobs of a sweep complete
            atexit.register(ignore_signals_at_exit)
        return returned
    except SystemExit as stop:
        if stop.code == USER_ERROR_STATUS:  # refused: the folder's records describe its earlier run again
            restore_records_after_refusal()
            record_refusal()  # a sweep job's note: a launcher that keeps no exit status can tell it from a queued one
        raise
    except TrainingDiverged as failed:  # the manifest says failed, with this reason
        print(f"chipadapt: error: {failed}", file=sys.stderr, flush=True)
        if in_sweep():
            _diverged_jobs.append(_job_name())
            return DIVERGED
        sys.exit(DIVERGED_STATUS)
    except Exception as err:
        exit_if_disk_full(err)
        raise
    except interrupts.Interrupted as stop:
        exit_interrupted(stop, _last_job["rerun"])


def _naming_target_keys(function: Callable[..., Any], cfg: DictConfig, *args: Any) -> Any:
    """`function(cfg, *args)`, where a `_target_` config given a key its target does not take (from a config
    file: validate names the command line's) is refused naming the key, not as Hydra's "Error in call to
    target 'X': TypeError(...)" after its "Error executing job" line."""
    from hydra.errors import InstantiationException

    try:
        return function(cfg, *args)
    except InstantiationException as err:
        named = _unknown_target_key(cfg, err)
        if named is None:
            raise
        raise named from err


def _unknown_target_key(cfg: DictConfig, err: BaseException) -> BaseException | None:
    """The ChipadaptError naming a key of the config whose target `err` failed to call with it, or None."""
    import re

    from omegaconf import OmegaConf

    from chipadapt.config_schema import check_target_keys
    from chipadapt.errors import ChipadaptError

    called = re.match(r"Error in call to target '([^']+)'", str(err))
    if called is None or not isinstance(err.__cause__, TypeError):
        return None
    pending = [("", cfg)]
    while pending:
        where, node = pending.pop()
        for key, value in node.items_ex(resolve=False):
            if isinstance(value, DictConfig) and not OmegaConf.is_interpolation(node, key):
                pending.append((f"{where}{key}.", value))
        if OmegaConf.select(node, "_target_", default=None, throw_on_resolution_failure=False) != called.group(1):
            continue
        try:
            check_target_keys(node, where.rstrip("."))
        except ChipadaptError as named:
            return named
    return None


def _job_name() -> str:
    """`#1 (optim.lr=10000.0)`, or `trial #1 (...)` in a search (read while the job's config is set)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "a job"
    from chipadapt.sweep_preflight import is_optuna_search

    hydra = HydraConfig.get()
    searched = is_optuna_search(hydra)
    return f"{'trial ' if searched else ''}#{hydra.job.num} ({hydra.job.override_dirname or 'no overrides'})"


def exit_if_a_sweep_job_diverged() -> None:
    """At the end of a sweep: a grid with a diverged job is incomplete, so the command fails (exit 1,
    for `set -e` scripts and SLURM accounting) after the other jobs ran; a search (Optuna) counts a
    diverged trial as its worst value and its result stands, so it ends in a warning line."""
    if not _diverged_jobs:
        return
    count, names = len(_diverged_jobs), ", ".join(_diverged_jobs)
    if _diverged_jobs[0].startswith("trial "):
        print(f"chipadapt: warning: {count} trial(s) diverged and count as the worst value: {names}", file=sys.stderr)
        return
    print(
        f"chipadapt: error: {count} job(s) of this sweep diverged (the others completed): {names}",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(DIVERGED_STATUS)


def in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def worst_value() -> float | list[float]:
    """What a diverged job of a sweep returns: the worst value in the sweeper's direction (a list
    for several), which an Optuna study records as a poor trial before it asks for the next. An
    exception from the job ends the study, and so does NaN (optuna 2.10 refuses it in `tell`, and the
    Optuna sweeper's retry as a failed trial refuses the value again). The basic sweeper ignores it."""
    from hydra.core.hydra_config import HydraConfig

    direction = HydraConfig.get().sweeper.get("direction")
    directions = [direction] if direction is None or isinstance(direction, str) else list(direction)
    values = worst_for(directions)
    return values[0] if len(values) == 1 else values


def exit_interrupted(stop: interrupts.Interrupted, rerun: str | None) -> None:
    """One line, status 128+signal; `rerun`: what a rerun of the job does (after_interruption.py)."""
    say_interrupted(stop, rerun)  # from global rank 0 alone
    sys.exit(stop.exit_status)


def job_completed() -> bool:
    """The job that just returned recorded itself completed: its manifest.json (in Hydra's output folder)
    says so, or it writes none (a job whose record is its results)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return True
    manifest = Path(HydraConfig.get().runtime.output_dir) / "manifest.json"
    try:
        return json.loads(manifest.read_text()).get("status") == "completed"
    except FileNotFoundError:
        return True
    except (OSError, ValueError, AttributeError):
        return False


def ignore_signals_at_exit() -> None:
    """From the exit of a process whose last job completed, a stop signal is ignored. Python gives back the
    default action when it tears down its signal handlers, and torch's teardown takes up to a second after
    that: a Ctrl-C there killed a job whose manifest said completed with status 130 and no line at all.
    Registered only once a job completed (run_job), and still only where the last one did: after a failed or
    interrupted job, a teardown that hangs (an NCCL destructor) stays stoppable by Ctrl-C and SIGTERM."""
    if not _last_job["completed"]:
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        if interrupts.owns(sig):
            signal.signal(sig, signal.SIG_IGN)


def entry_point(config_dir: str, config_name: str, target: str) -> Callable[[], Any]:
    """The `main` of an entry-point script: `main = entry_point(CONF, "train", "chipadapt.pipeline:train")`."""

    def main(cfg: DictConfig) -> Any:
        if run_job(target, cfg) is DIVERGED:  # told and recorded: the sweep goes on
            return worst_value()
        # A sweeper (hparams_search=...) optimises what main returns: the metric `optimized_metric` names.
        from chipadapt.optimized_metric import optimized_value

        value = exit_on_user_error(optimized_value, cfg)
        # Non-finite (recorded as null): Optuna ends the study on NaN; the worst value lets it go on.
        return worst_value() if value is not None and math.isnan(value) and in_sweep() else value

    # Hydra names the job (and its log file, e.g. train.log) after the task function's module.
    main.__module__ = config_name
    main = hydra.main(version_base="1.3", config_path=config_dir, config_name=config_name)(main)

    def launch() -> Any:
        _install_hydra_reporter()
        # Before Hydra starts: a job run by a submitit worker sees `_submit.py` as its argv.
        record_command(sys.argv)
        # Hydra checks its own command-line flags (`-m --cfg job`) before its reporter runs.
        try:
            returned = _report_in_one_line(main)
            exit_if_a_sweep_job_diverged()
            return returned
        except interrupts.Interrupted as stop:
            # Between two jobs of a sweep (Hydra composing the next one): the handlers of the job
            # before are still installed, and nothing of that job is left to clean up. Hydra has put
            # back its config of no job by then: the line is the one the last job made.
            exit_interrupted(stop, _last_job["rerun"])
        except KeyboardInterrupt:
            # Before the first job installed the handlers (Hydra composing, a sweeper importing Optuna):
            # Python's own Ctrl-C, with no run begun, or with what the last job left complete.
            if _last_job["rerun"] is not None:
                exit_interrupted(interrupts.Interrupted(signal.SIGINT), _last_job["rerun"])
            print("chipadapt: interrupted (SIGINT) before a job started; no run was begun", file=sys.stderr)
            sys.exit(128 + signal.SIGINT)

    return launch
