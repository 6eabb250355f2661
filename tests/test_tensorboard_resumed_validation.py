"""TensorBoard agrees with metrics.csv at a resumed checkpoint's step N: the validation logged at N (of the
checkpoint's own weights) stays one point when the resumed run does not validate N again (a finished run
trained longer), and is replaced by the resumed run's own when it does (a checkpoint written before its
step's validation); the replayed training events at N show once either way."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from chipadapt.loggers.tensorboard import RunTensorBoardLogger, after_event_files

VAL = "val/domain/bpb"


def job(folder, start: int | None, logged: list[tuple[int, dict]]) -> None:
    """One job's logging in `folder` (a training run resumed at `start`), closed as Lightning closes it."""
    # Separate processes (as resumed runs are) open their files in other seconds; this one may not.
    after_event_files(str(folder / "tensorboard"))
    logger = RunTensorBoardLogger(save_dir=str(folder), name="tensorboard", version="")
    if start is not None:
        logger.start_at(start)
    logger.log_hyperparams({"lr": 1e-4})
    for step, metrics in logged:
        logger.log_metrics(metrics, step=step)
    logger.finalize("success")


def shown(folder, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()  # as TensorBoard reads the folder: a purge marker hides the events it replaces
    return [(event.step, round(event.value, 4)) for event in events.Scalars(tag)]


# A finished 3-step run: training at steps 0-2, its final validation at step 3.
FINISHED = [(0, {VAL: 2.5}), *((s, {"train/loss": 6.0 - s / 10}) for s in range(3)), (3, {VAL: 2.1628})]


def test_a_finished_run_trained_longer_keeps_its_final_validation(tmp_path):
    job(tmp_path, 0, FINISHED)
    job(tmp_path, 3, [(3, {"train/loss": 5.7}), (4, {VAL: 2.0})])
    assert shown(tmp_path, VAL) == [(0, 2.5), (3, 2.1628), (4, 2.0)]
    assert shown(tmp_path, "train/loss") == [(0, 6.0), (1, 5.9), (2, 5.8), (3, 5.7)]
    # Resumed once more from step 3 (killed after its copy of the validation was written): still one point.
    job(tmp_path, 3, [(3, {"train/loss": 5.7})])
    assert shown(tmp_path, VAL) == [(0, 2.5), (3, 2.1628)]


def test_a_resumed_run_that_validates_the_step_again_replaces_the_kept_validation(tmp_path):
    # Killed after step 3's training was logged; the resumed run logs its lr, then validates step 3 again.
    job(tmp_path, 0, [*FINISHED, (3, {"train/loss": 5.7})])
    job(tmp_path, 3, [(3, {"lr": 1e-4}), (3, {VAL: 2.1627}), (3, {"train/loss": 5.71}), (4, {VAL: 2.0})])
    assert shown(tmp_path, VAL) == [(0, 2.5), (3, 2.1627), (4, 2.0)]
    assert shown(tmp_path, "lr") == [(3, 0.0001)]
    assert shown(tmp_path, "train/loss")[-1:] == [(3, 5.71)]


def test_a_run_started_over_keeps_no_validation_of_the_earlier_run(tmp_path):
    job(tmp_path, 0, FINISHED)
    job(tmp_path, 0, [(0, {"train/loss": 6.1})])
    assert shown(tmp_path, VAL) == [] and shown(tmp_path, "train/loss") == [(0, 6.1)]
