"""CSV logger that appends to an existing metrics.csv instead of deleting it.

Lightning's CSVLogger removes metrics.csv when its folder is not empty. A run resumed in the same
folder must keep the curve it already logged, so this writer adopts the existing header instead.
Lightning also rewrites metrics.csv in place whenever a new metric name appears (the first
validation of every run) and hparams.yaml at each call: a kill or a full disk then left an empty or
cut file, the whole logged curve lost. Both are written beside and renamed over here.

A job tells the logger where its own logging starts (`start_at`, before the first row): a run resumed
from a checkpoint at step N logs steps N, N+1, ... again, so the rows an earlier attempt logged from
step N on (after that checkpoint: lost with the kill) are dropped first instead of appearing twice, but
for the validation at step N, of the checkpoint's own weights, which the resumed run does not repeat; a
run started over (resume=false), and an evaluate.py or merge.py rerun, start at 0 and so start the
file over. A run started over discards the checkpoint it did not resume at that same moment
(stages/start_over.discard_checkpoint): the rows below a checkpoint's step are always its own run's.
Without `start_at` (the logger used on its own) every row is kept.
"""

import csv
import io
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from chipadapt.io.atomic import write_text_atomic
from chipadapt.loggers.hparams_file import save_hparams_file


class _AppendingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, start_step: int | None = None):
        self.start_step = start_step  # read by _check_log_dir_exists, which the base __init__ calls
        self.kept_validation_step: int | None = None  # a validation row kept at the resumed step, if any
        super().__init__(log_dir=log_dir)

    def log_metrics(self, metrics_dict: dict, step: int | None = None) -> None:
        # The resumed run validated the checkpoint's weights again after all (a checkpoint written before
        # its step's validation): its row replaces the kept one, rather than appearing twice.
        if step is not None and step == self.kept_validation_step and any(k.startswith("val/") for k in metrics_dict):
            self._drop_kept_validation(step)
            self.kept_validation_step = None
        super().log_metrics(metrics_dict, step)

    def _check_log_dir_exists(self) -> None:
        if self.start_step is not None and os.path.isfile(self.metrics_file_path):
            self._drop_rows_from(self.start_step)
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as handle:
                self.metrics_keys = sorted(next(csv.reader(handle), []))
            with open(self.metrics_file_path, "rb+") as handle:
                # A row cut short by a kill or a full disk: end it, so the resumed run's rows start on
                # their own line instead of being glued onto it (the cut row stays, short by some fields).
                size = handle.seek(0, os.SEEK_END)
                if size:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":
                        handle.write(b"\r\n")

    def _drop_rows_from(self, start: int) -> None:
        """Keep the rows logged before step `start`, and a validation at `start`; a row whose step cannot
        be read (one cut short by the kill) goes too. The file is replaced whole, and only when a row goes."""
        rows, fieldnames = self._rows()
        # A start at 0 is a run started over: nothing of the earlier one stays, its first validation neither.
        kept = [
            row
            for row in rows
            if _step(row) is not None and (_step(row) < start or (start > 0 and _validation_at(row, start)))
        ]
        if any(_step(row) == start for row in kept):
            self.kept_validation_step = start
        self._write_kept(rows, kept, fieldnames)

    def _drop_kept_validation(self, step: int) -> None:
        """The validation row kept at `step` goes (the rows this run logged since stay)."""
        self.save()  # what this run logged so far is in the file before it is rewritten
        rows, fieldnames = self._rows()
        self._write_kept(rows, [row for row in rows if not _validation_at(row, step)], fieldnames, header=True)

    def _rows(self) -> tuple[list[dict], list[str]]:
        with open(self.metrics_file_path, newline="") as handle:
            reader = csv.DictReader(handle)
            return list(reader), list(reader.fieldnames or [])

    def _write_kept(self, rows: list[dict], kept: list[dict], fieldnames: list[str], header: bool = False) -> None:
        """`kept` of the file's `rows`, whole; with nothing kept an empty file (the next run writes the header
        of what it logs), unless `header`: this run's keys are known to the writer already, so it keeps them."""
        if len(kept) == len(rows):
            return
        buffer = io.StringIO(newline="")
        if kept or header:
            writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        # Nothing kept: an empty file, so the new run writes the header of what it logs, not the old one's.
        write_text_atomic(self.metrics_file_path, buffer.getvalue())

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.metrics_file_path, buffer.getvalue())

    def log_hparams(self, params: dict) -> None:
        self.hparams.update(params)
        save_hparams_file(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)


def _validation_at(row: dict, start: int) -> bool:
    """A validation row at the checkpoint's own step: it measured the checkpoint's weights, and a resumed
    run does not always validate them again (Lightning skips the validation of a finished run's last step
    when `overwrite=true trainer.max_steps=...` trains it longer: dropping the row lost that run's final
    validation). Where the resumed run does validate them, its row replaces this one (`log_metrics`)."""
    metrics = [key for key, value in row.items() if value not in ("", None) and key not in ("epoch", "step")]
    return _step(row) == start and bool(metrics) and all(key.startswith("val/") for key in metrics)


def _step(row: dict) -> int | None:
    try:
        return int(row.get("step") or "")
    except ValueError:
        return None


class AppendingCSVLogger(CSVLogger):
    _start_step: int | None = None

    def start_at(self, step: int) -> None:
        """This job logs from `step` on: the rows an earlier attempt logged there or later are dropped
        when the file is opened (before the first row this job logs)."""
        self._start_step = step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir, start_step=self._start_step)
        return self._experiment
