"""TensorBoard's HPARAMS view shows each run's own figure as `hp_metric`: Lightning's placeholder -1
was every run's value there (two -1 events at step 0 per training run), whatever the run measured."""

import pytest


def scalars(folder, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return [(e.step, pytest.approx(e.value)) for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def hparams_declared(folder) -> bool:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def end_of_job(succeeded: bool) -> None:
    from chipadapt.loggers.tensorboard import end_of_job as ended

    ended(succeeded)


def new_logger(tmp_path):
    from chipadapt.loggers.tensorboard import RunTensorBoardLogger

    return RunTensorBoardLogger(save_dir=str(tmp_path), name="tensorboard", version="")


def test_a_training_run_shows_its_last_domain_bpb_not_minus_one(tmp_path):
    logger = new_logger(tmp_path)
    logger.log_hyperparams({"optimized_metric": None, "optim": {"lr": 1e-3}})  # the job's config
    logger.log_hyperparams({"lr": 1e-3})  # the module's own, as Lightning logs them at fit start
    logger.log_metrics({"val/domain/bpb": 4.0, "val/general/bpb": 4.4}, step=0)
    logger.log_metrics({"train/loss": 6.0}, step=2)
    logger.log_metrics({"val/domain/bpb": 3.5, "val/general/bpb": 4.1}, step=4)
    logger.finalize("success")
    logger.finalize("success")  # fit, then the last validation: Lightning's, no hp_metric yet
    end_of_job(True)  # the job succeeded (job.recorded_job, through loggers/job_end.py)
    folder = tmp_path / "tensorboard"
    assert scalars(folder, "hp_metric") == [(4, 3.5)]
    assert hparams_declared(folder)  # the settings still reach the HPARAMS view


def test_the_optimized_metric_is_the_hp_metric_and_a_failed_run_has_none(tmp_path):
    logger = new_logger(tmp_path / "merge")
    logger.log_hyperparams({"optimized_metric": "ifeval.prompt_loose", "merge": {"lam": 0.5}})
    logger.log_metrics({"perplexity/domain.bpb": 4.8, "ifeval/prompt_loose": 0.25}, step=0)  # as JobLoggers logs
    logger.finalize("success")
    end_of_job(True)
    assert scalars(tmp_path / "merge" / "tensorboard", "hp_metric") == [(0, 0.25)]

    failed = new_logger(tmp_path / "failed")
    failed.log_hyperparams({"optimized_metric": None})
    failed.log_metrics({"val/domain/bpb": 4.0}, step=0)
    failed.finalize("failed")
    end_of_job(False)
    assert scalars(tmp_path / "failed" / "tensorboard", "hp_metric") == []  # blank, not a made-up -1

    # Diverged (a validation inside training showed NaN and stopped it; the fit itself ends as success):
    # no value, not a NaN beside the settings.
    diverged = new_logger(tmp_path / "diverged")
    diverged.log_hyperparams({"optimized_metric": None})
    diverged.log_metrics({"val/domain/bpb": float("nan")}, step=3)
    diverged.finalize("success")
    end_of_job(True)
    assert scalars(tmp_path / "diverged" / "tensorboard", "hp_metric") == []


def test_the_hp_metric_of_a_job_ended_within_its_first_second_is_shown(tmp_path, monkeypatch):
    """Lightning's finalize closes the writer, so the hp_metric goes into a file opened at the job's end. Within
    the second the run's own file was opened, the process's file count made that file sort first (`.10`
    before `.9`), and the run's own file, read after it, purged the hp_metric with its start-step marker."""
    from tensorboard.summary.writer import event_file_writer

    monkeypatch.setattr(event_file_writer, "_global_uid", event_file_writer.AtomicCounter(9))
    logger = new_logger(tmp_path)
    logger.start_at(0)  # a training run's logger: a purge marker at its start step
    logger.log_metrics({"val/domain/bpb": 4.0}, step=0)
    logger.finalize("success")
    end_of_job(True)
    assert scalars(tmp_path / "tensorboard", "hp_metric") == [(0, 4.0)]


def test_figures_logged_after_the_writer_closed_within_its_first_second_are_shown(tmp_path, monkeypatch):
    """The retriever stage logs its evaluation after fit, whose finalize closed the writer: the same purge."""
    from tensorboard.summary.writer import event_file_writer

    monkeypatch.setattr(event_file_writer, "_global_uid", event_file_writer.AtomicCounter(9))
    logger = new_logger(tmp_path)
    logger.start_at(0)
    logger.log_metrics({"val/in_batch_loss": 0.5}, step=0)
    logger.finalize("success")
    logger.log_metrics({"retrieval.mrr": 0.75}, step=1)
    logger.finalize("success")
    assert scalars(tmp_path / "tensorboard", "retrieval.mrr") == [(1, 0.75)]
