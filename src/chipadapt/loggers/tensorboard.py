"""Lightning's TensorBoardLogger, told where the job's logging starts.

A run resumed from a checkpoint at step N logs steps N, N+1, ... again; the events an earlier attempt
wrote from step N on (after that checkpoint: lost with the kill) would show twice. SummaryWriter's
`purge_step` (Lightning passes extra arguments on to it) writes a marker that makes TensorBoard
discard the older events at step N and later, so the replayed steps replace the lost ones. A run
started over (resume=false), and an evaluate.py or merge.py rerun, start at 0: their curves start
over while the earlier event files stay where they are (the reader hides what they held).

The marker hides the validation logged at step N too, of the checkpoint's own weights, which the resumed
run does not always repeat (Lightning skips a finished run's last validation when `overwrite=true
trainer.max_steps=...` trains it longer): metrics.csv keeps that row, so the values TensorBoard showed at
N are written again right after the marker. Where the resumed run validates step N after all (a
checkpoint written before its step's validation), a second marker at N hides the copies and what this
job logged at N so far is written again before the new validation: one point at N, as in metrics.csv.

Lightning writes hparams.yaml in place, and only when the file is absent: a kill mid-write left a
truncated file for good, and a run started over in the folder kept the first run's settings there.
Each save now replaces it whole with this job's.

TensorBoard's HPARAMS view lists each run's settings beside the metrics the run declared with them;
Lightning declares one, `hp_metric`, and logs it as -1 at once, so every run read -1 there. Switching
Lightning's placeholder off (`default_hp_metric=False`) would leave the view empty: Lightning then
writes no settings for it at all. So the declaration stays, the -1 goes, and a run that succeeds logs
as `hp_metric` the metric it is judged by: `optimized_metric` (what a sweep optimises, named in the
config the job logs), else its domain bits per byte, at the step it was measured. The HPARAMS view
then ranks a sweep's runs by that figure; a run that failed shows no value rather than a made-up one.
It is logged once, when the job ends and has succeeded (`end_of_job`, which the job's end calls through
`loggers.job_end.finish_job_loggers`), not at Lightning's `finalize("success")`: Lightning says that at the
end of every `validate` and `fit`, and a training run killed after its validation before training
showed the starting model's figure as the run's."""

import glob
import math
import os
import time
import weakref
from collections.abc import Mapping

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event, SessionLog

from chipadapt.loggers.hparams_file import save_hparams_file

HP_METRIC = "hp_metric"
# hp_metric without an `optimized_metric` the run logs: the domain bits per byte, as training's
# validation and evaluate.py's or merge.py's perplexity task log it (names with "/" read as ".").
DOMAIN_BPB = ("val.domain.bpb", "perplexity.domain.bpb")
VALIDATION_PREFIX = "val/"  # what the training module's validation logs, as metrics.csv's kept row has it


# This process's loggers whose job has not ended yet: `end_of_job` logs their hp_metric.
_OPEN: "weakref.WeakSet[RunTensorBoardLogger]" = weakref.WeakSet()


def end_of_job(succeeded: bool) -> None:
    """The job of this process ended: on success each of its TensorBoard loggers logs its hp_metric, once."""
    for logger in list(_OPEN):
        if succeeded:
            logger.log_hp_metric()
    _OPEN.clear()


def _dotted(name: str) -> str:
    """A metric's name as `optimized_metric` writes it and as the loggers log it, made the same."""
    return str(name).replace("/", ".")


class RunTensorBoardLogger(TensorBoardLogger):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._optimized_metric: str | None = None
        self._latest: dict[str, tuple[float, int | None]] = {}  # each metric's last value and step
        self._hp_logged: tuple[float, int | None] | None = None
        self._placeholder = False  # inside Lightning's log_hyperparams, which logs hp_metric=-1
        self._start_step: int | None = None
        # The validation TensorBoard showed at the resumed step (tag: value, wall time), written again
        # after the marker; None once this job's own validation of that step replaced it.
        self._kept_validation: dict[str, tuple[float, float]] | None = None
        self._logged_at_start: list[dict] = []  # what this job logged at the resumed step, in order
        _OPEN.add(self)

    @rank_zero_only
    def log_hyperparams(self, params, metrics=None, step=None) -> None:
        if isinstance(params, Mapping) and params.get("optimized_metric"):  # the job's whole config
            self._optimized_metric = _dotted(params["optimized_metric"])
        self._placeholder = metrics is None and self._default_hp_metric
        try:
            super().log_hyperparams(params, metrics, step)  # declares hp_metric to the HPARAMS view
        finally:
            self._placeholder = False

    @property
    @rank_zero_experiment
    def experiment(self):
        opening = self._experiment is None
        writer = super().experiment
        if opening and self._kept_validation:
            for tag, (value, wall_time) in self._kept_validation.items():
                writer.add_scalar(tag, value, self._start_step, walltime=wall_time)  # after the marker
        return writer

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        if self._placeholder:  # the -1 Lightning logs with the declaration: no measurement
            return
        if self._experiment is not None and getattr(self._experiment, "file_writer", True) is None:
            after_event_files(self.log_dir)  # closed by Lightning's finalize: this opens a new file (the stage's
            # figures logged after fit, as the retriever's evaluation)
        if self._kept_validation is not None and step is not None and step == self._start_step:
            if any(_is_validation(name) for name in metrics):
                self._replace_kept_validation(step)
            else:
                self._logged_at_start.append(dict(metrics))
        for name, value in metrics.items():
            try:
                self._latest[_dotted(name)] = (float(value), step)
            except (TypeError, ValueError):  # add_scalars' dict of curves: no one figure
                pass
        super().log_metrics(metrics, step)

    @rank_zero_only
    def log_hp_metric(self) -> None:
        """The run's metric as hp_metric, when its job has succeeded (`end_of_job`); again only when it
        changed (a second call logs nothing), and written out at once: the job ends here."""
        for name in (self._optimized_metric, *DOMAIN_BPB):
            if name in self._latest:
                if not math.isfinite(self._latest[name][0]):  # diverged: the run fails, it is judged by nothing
                    return
                if self._latest[name] != self._hp_logged:
                    value, step = self._hp_logged = self._latest[name]
                    after_event_files(self.log_dir)  # Lightning's finalize closed the writer: a new file
                    super().log_metrics({HP_METRIC: value}, step)
                    self.experiment.close()  # written out: Lightning's finalize closed the writer before
                return

    def start_at(self, step: int) -> None:
        """This job logs from `step` on; called before the first event is written (the writer reads
        `purge_step` once, when it opens its file)."""
        self._kwargs["purge_step"] = step
        self._start_step = step
        # A start at 0 is a run started over: nothing of the earlier one stays, its first validation neither.
        self._kept_validation = (_visible_validation(self.log_dir, step) if step > 0 else None) or None

    def _replace_kept_validation(self, step: int) -> None:
        """This job validates the resumed step again: a marker at `step` hides the copies written after the
        first one, and what this job logged at `step` before its validation is written again after it."""
        self._kept_validation = None
        writer = self.experiment
        writer._get_file_writer().add_event(  # the event SummaryWriter writes for `purge_step`
            Event(step=step, wall_time=time.time(), session_log=SessionLog(status=SessionLog.START))
        )
        for metrics in self._logged_at_start:
            super().log_metrics(metrics, step)
        self._logged_at_start = []

    @rank_zero_only
    def save(self) -> None:
        if os.path.isdir(self.log_dir):
            save_hparams_file(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)
        super().save()  # the file is there now, so Lightning's own in-place write is skipped


def after_event_files(log_dir: str) -> None:
    """Wait, at most a second, until a writer opened now names its file after every event file in
    `log_dir`. TensorBoard reads the files in name order, `events.out.tfevents.<second>.<host>.<pid>.<n>`,
    where n counts the files this process opened: within one second `.10` sorts before `.9`, and the
    run's own file, read after, then purged the hp_metric of a job that ended within the second of its
    start (its purge marker at the start step hides what came before it)."""
    names = os.listdir(log_dir) if os.path.isdir(log_dir) else []
    parts = [name.split(".") for name in names if name.startswith("events.out.tfevents.")]
    seconds = [int(part[3]) for part in parts if len(part) > 3 and part[3].isdigit()]
    while seconds and int(time.time()) <= max(seconds):
        time.sleep(0.05)


def _is_validation(name: str) -> bool:
    return str(name).startswith(VALIDATION_PREFIX)


def _visible_validation(log_dir: str, step: int) -> dict[str, tuple[float, float]]:
    """The validation scalars at `step` that TensorBoard shows from the event files in `log_dir`: read in
    TensorBoard's order (by file name), a marker at a step up to `step` hides what came before it."""
    shown: dict[str, tuple[float, float]] = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(log_dir), "*tfevents*"))):
        for event in LegacyEventFileLoader(path).Load():  # a file cut by a kill ends at its last whole event
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                if event.step <= step:
                    shown.clear()
            elif event.step == step and event.HasField("summary"):
                for value in event.summary.value:
                    if _is_validation(value.tag) and value.HasField("simple_value"):
                        shown[value.tag] = (value.simple_value, event.wall_time)
    return shown
