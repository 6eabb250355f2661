"""Lightning's TensorBoardLogger, told where the job's logging starts.

A run resumed from a checkpoint at step N logs steps N, N+1, ... again; the events an earlier attempt
wrote from step N on (after that checkpoint: lost with the kill) would show twice. SummaryWriter's
`purge_step` (Lightning passes extra arguments on to it) writes a marker that makes TensorBoard
discard the older events at step N and later, so the replayed steps replace the lost ones. A run
started over (resume=false), and an evaluate.py or merge.py rerun, start at 0: their curves start
over while the earlier event files stay where they are (the reader hides what they held)."""

from lightning.pytorch.loggers import TensorBoardLogger


class RunTensorBoardLogger(TensorBoardLogger):
    def start_at(self, step: int) -> None:
        """This job logs from `step` on; called before the first event is written (the writer reads
        `purge_step` once, when it opens its file)."""
        self._kwargs["purge_step"] = step
