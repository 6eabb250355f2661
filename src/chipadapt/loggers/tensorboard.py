"""Lightning's TensorBoardLogger, told where the job's logging starts.

A run resumed from a checkpoint at step N logs steps N, N+1, ... again; the events an earlier attempt
wrote from step N on (after that checkpoint: lost with the kill) would show twice. SummaryWriter's
`purge_step` (Lightning passes extra arguments on to it) writes a marker that makes TensorBoard
discard the older events at step N and later, so the replayed steps replace the lost ones. A run
started over (resume=false), and an evaluate.py or merge.py rerun, start at 0: their curves start
over while the earlier event files stay where they are (the reader hides what they held).

Lightning writes hparams.yaml in place, and only when the file is absent: a kill mid-write left a
truncated file for good, and a run started over in the folder kept the first run's settings there.
Each save now replaces it whole with this job's."""

import os

from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from chipadapt.io.atomic import atomic_file


class RunTensorBoardLogger(TensorBoardLogger):
    def start_at(self, step: int) -> None:
        """This job logs from `step` on; called before the first event is written (the writer reads
        `purge_step` once, when it opens its file)."""
        self._kwargs["purge_step"] = step

    @rank_zero_only
    def save(self) -> None:
        if os.path.isdir(self.log_dir):
            with atomic_file(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)) as tmp:
                save_hparams_to_yaml(tmp, self.hparams)
        super().save()  # the file is there now, so Lightning's own in-place write is skipped
