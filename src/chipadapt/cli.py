"""What every entry point (train, evaluate, merge, chat, compare, curate, reproduce) shares: Hydra
composes the config; what goes wrong in the user's input, at composition or later, comes out as one
`chipadapt: error:` line with exit status 2 and no traceback; SIGINT/SIGTERM end the run as
`interrupted` with status 128+signal. Heavy modules are imported only when a job runs, so `--help`
and shell completion stay fast."""

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

import chipadapt  # noqa: F401  (registers the config resolvers)
from chipadapt import interrupts
from chipadapt.errors import exit_on_user_error
from chipadapt.io.command_line import record_command
from chipadapt.io.disk_full import disk_full_error, disk_full_message
from chipadapt.run_folder_guard import restore_records_after_refusal
from chipadapt.run_folder_key import run_folder_key

USER_ERROR_STATUS = 2
DISK_FULL_STATUS = 1  # not the user's input: the status of any other failure, told in one line


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


def describe_hydra_error(err: BaseException) -> str | None:
    """A one-line description of a composition error (unknown group option, unknown key, bad
    override syntax, wrong type), or None for anything that is not the user's input."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException

    if isinstance(err, ValueError) and str(err).startswith("Only one of --run, --multirun"):
        return f"{err} (a sweep's config shows with --cfg job or --cfg hydra, without -m)"
    if isinstance(err, OverrideParseException):
        return f"{err.override}: not a valid override ({_one_line(err.message).split('; See https')[0]})"
    if isinstance(err, MissingConfigException):
        options = getattr(err, "options", None) or _group_options(getattr(err, "missing_cfg_file", None))
        text = _one_line(err.args[0] if err.args else err).split("; Available options")[0]
        return f"{text} (available: {', '.join(options)})" if options else text
    if isinstance(err, (HydraException, OmegaConfBaseException)):
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
    module_name, function_name = target.split(":")
    try:
        from chipadapt.config_schema import validate

        exit_on_user_error(validate, cfg)
        function = getattr(importlib.import_module(module_name), function_name)
        return exit_on_user_error(function, cfg, *args)
    except SystemExit as stop:
        if stop.code == USER_ERROR_STATUS:  # refused: the folder's records describe its earlier run again
            restore_records_after_refusal()
        raise
    except Exception as err:
        exit_if_disk_full(err)
        raise
    except interrupts.Interrupted as stop:
        print(
            f"chipadapt: interrupted ({stop}); what was complete is kept, a rerun with the same {run_folder_key()} "
            "resumes",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(stop.exit_status)


def entry_point(config_dir: str, config_name: str, target: str) -> Callable[[], Any]:
    """The `main` of an entry-point script: `main = entry_point(CONF, "train", "chipadapt.pipeline:train")`."""

    def main(cfg: DictConfig) -> Any:
        run_job(target, cfg)
        # A sweeper (hparams_search=...) optimises what main returns: the metric `optimized_metric` names.
        from chipadapt.optimized_metric import optimized_value

        return exit_on_user_error(optimized_value, cfg)

    # Hydra names the job (and its log file, e.g. train.log) after the task function's module.
    main.__module__ = config_name
    main = hydra.main(version_base="1.3", config_path=config_dir, config_name=config_name)(main)

    def launch() -> Any:
        _install_hydra_reporter()
        # Before Hydra starts: a job run by a submitit worker sees `_submit.py` as its argv.
        record_command(sys.argv)
        # Hydra checks its own command-line flags (`-m --cfg job`) before its reporter runs.
        return _report_in_one_line(main)

    return launch
