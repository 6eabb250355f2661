"""CSV logger that appends to an existing metrics.csv instead of deleting it.

Lightning's CSVLogger removes metrics.csv when its folder is not empty. A run resumed in the same
folder must keep the curve it already logged, so this writer adopts the existing header instead.
Lightning also rewrites metrics.csv in place whenever a new metric name appears (the first
validation of every run) and hparams.yaml at each call: a kill or a full disk then left an empty or
cut file, the whole logged curve lost. Both are written beside and renamed over here.
"""

import csv
import io
import os

from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from chipadapt.io.atomic import atomic_file, write_text_atomic


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
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
        with atomic_file(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)) as tmp:
            save_hparams_to_yaml(tmp, self.hparams)


class AppendingCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
