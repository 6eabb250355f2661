"""One exception type for every user-facing mistake, and the CLI wrapper that turns it into one line."""

import logging
import math
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
USER_ERROR_STATUS = 2  # the exit status of refused input (a ChipadaptError)


class ChipadaptError(Exception):
    """Bad input or configuration: the message names the file, line or config key at fault."""


def exit_on_user_error(fn: Callable[..., Any], *args: Any) -> Any:
    """Run an entry point; a ChipadaptError becomes a one-line message and exit status 2."""
    try:
        return fn(*args)
    except Exception as err:
        # Hydra's instantiate wraps what a _target_ raises; the user's mistake is the cause.
        cause = err if isinstance(err, ChipadaptError) else err.__cause__
        if not isinstance(cause, ChipadaptError):
            raise
        print(f"chipadapt: error: {cause}", file=sys.stderr, flush=True)
        log.debug("user error", exc_info=True)
        sys.exit(USER_ERROR_STATUS)


class TrainingDiverged(Exception):
    """Training ran with valid settings and its weights or validation went non-finite: a failed run,
    told in one line (cli.run_job), its model not published. Not a ChipadaptError: nothing in the input
    was refused, so it exits with status 1 (a failure), not 2 (input refused, the folder's records of
    its earlier run put back)."""


def worst_for(directions: list) -> list[float]:
    """The worst value of each direction (NaN for an unknown one): what a diverged job of a sweep returns
    (cli.worst_value), and what the search tells for a diverged trial it reads back from its folder."""
    worst = {"minimize": math.inf, "maximize": -math.inf}
    # An enum (`Direction.minimize`) where the sweeper's dataclass default is kept; its name otherwise.
    return [worst.get(str(getattr(d, "name", d)).lower(), math.nan) for d in directions]
