"""An entry point's job run in this process, as the command runs it after Hydra composed its config: the
config validated, then the job's function called (cli.run_job). Each fresh `merge.py`/`evaluate.py`
process spent seconds importing before it refused anything; the fault tests keep one such process per
claim of the command line's contract (exit status 2, one `chipadapt: error:` line, nothing changed) and
check the other cases of that claim here, on the message the command would print."""

import importlib
from pathlib import Path
from typing import Any

import pytest

from chipadapt.cli import describe_hydra_error
from chipadapt.errors import ChipadaptError
from helpers.entry_jobs import entry_job
from helpers.faults import assert_unchanged

TARGETS = {
    "train": "chipadapt.pipeline:train",
    "merge": "chipadapt.merge.run:run",
    "evaluate": "chipadapt.eval.run:run",
    "chat": "chipadapt.chat:run",
}


def run_here(command: str, overrides: list[str], run_dir: Path) -> Any:
    """The job's result, validated and run as run_job runs it (a ChipadaptError is the refusal), with Hydra's
    config of the job set as the command sets it."""
    from chipadapt.config_schema import validate

    with entry_job(command, overrides, run_dir) as cfg:
        validate(cfg)
        module, function = TARGETS[command].split(":")
        return getattr(importlib.import_module(module), function)(cfg)


def refused_here(command: str, overrides: list[str], run_dir: Path, *fragments: str, before=None) -> str:
    """The job refused: the line it would print (with each fragment), the inputs in `before` unchanged."""
    try:
        run_here(command, overrides, run_dir)
    except Exception as err:  # noqa: BLE001 (what exit_on_user_error turns into the line, as it finds it)
        # Hydra's instantiate wraps what a _target_ raises; the user's mistake is the cause.
        cause = err if isinstance(err, ChipadaptError) else err.__cause__
        # Else the line of the entry's reporter, for Hydra's and OmegaConf's errors (cli._report_in_one_line).
        line = str(cause) if isinstance(cause, ChipadaptError) else describe_hydra_error(err)
        if line is None:
            raise
    else:
        pytest.fail(f"{command}: not refused")
    assert "\n" not in line, line
    for fragment in fragments:
        assert fragment in line, line
    if before is not None:
        assert_unchanged(before)
    return line
