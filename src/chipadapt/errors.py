"""One exception type for every user-facing mistake, and the CLI wrapper that turns it into one line."""

import logging
import sys
from collections.abc import Callable
from typing import Any

from chipadapt.io.disk_full import disk_full_error, disk_full_message

log = logging.getLogger(__name__)


class ChipadaptError(Exception):
    """Bad input or configuration: the message names the file, line or config key at fault."""


def exit_on_user_error(fn: Callable[..., Any], *args: Any) -> Any:
    """Run an entry point; a ChipadaptError becomes a one-line message and exit status 2, a full disk
    one line naming the file and exit status 1."""
    try:
        return fn(*args)
    except Exception as err:
        if disk_full_error(err) is not None:
            logging.raiseExceptions = False  # the log file cannot be written either: no "Logging error" dumps
            print(f"chipadapt: error: {disk_full_message(err)}", file=sys.stderr, flush=True)
            sys.exit(1)
        # Hydra's instantiate wraps what a _target_ raises; the user's mistake is the cause.
        cause = err if isinstance(err, ChipadaptError) else err.__cause__
        if not isinstance(cause, ChipadaptError):
            raise
        print(f"chipadapt: error: {cause}", file=sys.stderr, flush=True)
        log.debug("user error", exc_info=True)
        sys.exit(2)
