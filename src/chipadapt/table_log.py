"""A table printed to the console and also written to the run's log file (train.log): the console alone
is gone when a job's stdout is, and a log handler on stdout would print the table twice."""

import io
import logging

from rich.console import Console
from rich.table import Table

from chipadapt.report import console


def print_and_log(table: Table, logger: logging.Logger) -> None:
    """`table` on the console, and as plain text to the file handlers of `logger`'s hierarchy only."""
    console.print(table)
    text = io.StringIO()
    Console(file=text, width=1000, color_system=None).print(table)
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "\n" + text.getvalue().rstrip(), None, None)
    current = logger
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)
        current = current.parent if current.propagate else None
