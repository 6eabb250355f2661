"""A run whose training diverged fails in one line and publishes nothing: NaN validation sums were
dropped (loss 0, ppl 1: the best run of its sweep) and its NaN model published; a loss too large for
its exp ended the job, and the Optuna study around it, with an OverflowError. In a sweep the other
jobs go on; a Ctrl-C between two jobs of a sweep ends it like one during a job."""

import json
import math
import signal

import pytest
import torch
from conftest import CONF, TINY_FAST, compose, read_manifest
from helpers.faults import run_entry

from chipadapt import cli, interrupts
from chipadapt.after_interruption import TRAIN, rerun_note
from chipadapt.errors import TrainingDiverged

SPOIL = "+callbacks.spoil._target_=helpers.spoil.SpoilWeights"


def strict_json(path):
    def refuse(word):
        raise ValueError(f"non-standard JSON constant {word}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_nan_weights_fail_the_run_at_the_validation_that_shows_them(tmp_path):
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    # Spoilt after step 1 of 3; fit validates every 4 micro-batches (one step): it stops there.
    overrides = [*TINY_FAST, "trainer.max_steps=3", "trainer.val_check_interval=4", "optim.lr=1e-3", SPOIL]
    with pytest.raises(TrainingDiverged, match=r"val/domain/loss is nan at step 1 \(optim.lr=0.001\)"):
        train(compose(overrides, run))
    manifest = read_manifest(run)
    assert manifest["status"] == "failed"
    assert manifest["error"].startswith("TrainingDiverged: training diverged: val/domain/loss is nan")
    assert "the model was not published" in manifest["error"]
    assert "after" not in manifest["metrics"]  # no perfect scores recorded for it
    assert not (run / "model").exists() and not [p for p in run.iterdir() if p.name.startswith(".model")]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 1  # kept for inspection, and training went no further


def test_non_finite_weights_no_validation_read_are_not_published(tmp_path):
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    overrides = [*TINY_FAST, "trainer.max_steps=1", "trainer.limit_val_batches=0", SPOIL]
    with pytest.raises(TrainingDiverged, match=r"\d+ of \d+ weight tensors are not finite at step 1 \(first: "):
        train(compose(overrides, run))
    assert read_manifest(run)["status"] == "failed"
    assert not (run / "model").exists()


def test_a_loss_too_large_for_its_exp_is_measured_not_a_crash(tmp_path):
    """A finite loss of ~1,260 nats: perplexity inf (null in the strict-JSON manifest), the run completed;
    its loss and bits per byte tell what it is. Not called diverged: its weights are finite."""
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    overrides = [*TINY_FAST, "trainer.max_steps=1", SPOIL, "+callbacks.spoil.nan=false", "+callbacks.spoil.scale=1e3"]
    after = train(compose(overrides, run))["after"]["domain"]
    assert after["ppl"] == math.inf and 709 < after["loss"] < math.inf and math.isfinite(after["bpb"])
    manifest = strict_json(run / "manifest.json")
    assert manifest["status"] == "completed" and manifest["metrics"]["after"]["domain"]["ppl"] is None
    assert (run / "model" / "model.safetensors").is_file()


def test_perplexity_of_a_huge_loss_is_inf():
    from chipadapt.eval.intervals import ratio
    from chipadapt.modules.causal_lm import perplexity

    assert perplexity(57527.0) == math.inf and perplexity(2.0) == pytest.approx(math.exp(2.0))
    assert math.isnan(perplexity(math.nan))
    # evaluate.py's perplexity: exp of a mean nll per token, with its interval
    # six documents: the fewest an interval is given over (eval/intervals.py)
    nats, tokens = [57527.0, 57600.0, 57400.0, 57500.0, 57450.0, 57610.0], [10, 12, 9, 11, 10, 8]
    estimate = ratio([x * t for x, t in zip(nats, tokens)], tokens, transform="exp", resamples=50)
    assert estimate.value == math.inf and estimate.ci == (math.inf, math.inf)


def test_only_non_finite_float_tensors_count():
    from chipadapt.stages.common import non_finite_weights

    finite = {"a": torch.ones(3), "ids": torch.arange(3), "big": torch.full((2,), 3e38)}
    assert non_finite_weights(finite, 5) is None
    spoilt = {**finite, "b": torch.tensor([1.0, math.inf]), "c": torch.tensor([math.nan], dtype=torch.bfloat16)}
    assert non_finite_weights(spoilt, 5) == "2 of 5 weight tensors are not finite at step 5 (first: b)"


def diverge(cfg):
    raise TrainingDiverged("training diverged: val/domain/loss is nan at step 6 (optim.lr=10000.0)")


@pytest.fixture
def job_signals():
    """run_job takes over the stop signals: this process's handlers come back after the test."""
    signals = interrupts.STOP_SIGNALS + interrupts.REQUEUE_SIGNALS
    saved = {sig: signal.getsignal(sig) for sig in signals}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_diverged_single_run_exits_1_in_one_line(tmp_path, capsys, monkeypatch, job_signals):
    """Status 1, not 2: the settings were valid and ran; 2 means input refused (and puts back the
    folder's records of its earlier run)."""
    monkeypatch.setattr(cli, "in_sweep", lambda: False)
    monkeypatch.setattr(cli, "_diverged_jobs", [])
    cfg = compose(TINY_FAST, tmp_path / "run")
    with pytest.raises(SystemExit) as stop:
        cli.run_job("test_diverged_runs:diverge", cfg)
    assert stop.value.code == 1
    assert capsys.readouterr().err == (
        "chipadapt: error: training diverged: val/domain/loss is nan at step 6 (optim.lr=10000.0)\n"
    )
    monkeypatch.setattr(cli, "in_sweep", lambda: True)  # a job of a sweep: told, and the sweep goes on
    assert cli.run_job("test_diverged_runs:diverge", cfg) is cli.DIVERGED
    assert capsys.readouterr().err.count("chipadapt: error: training diverged") == 1


@pytest.fixture
def sweep_job():
    """HydraConfig as a job of an `hparams_search=dapt_optuna` sweep sees it, with `direction`."""
    import copy

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("train", overrides=["model=tiny", "hparams_search=dapt_optuna"], return_hydra_config=True)

    def job(direction=None):
        config = copy.deepcopy(cfg)
        if direction is not None:
            with open_dict(config):
                config.hydra.sweeper.direction = direction
        HydraConfig.instance().set_config(config)

    yield job
    HydraConfig.instance().cfg = None


def test_a_diverged_trial_is_the_worst_value_the_study_takes(sweep_job):
    """NaN would end the Optuna study (optuna refuses it in `tell`); inf is a poor completed trial."""
    import optuna

    sweep_job()
    assert cli.in_sweep() and cli.worst_value() == math.inf
    sweep_job("maximize")
    assert cli.worst_value() == -math.inf
    sweep_job(["minimize", "maximize"])
    assert cli.worst_value() == [math.inf, -math.inf]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    study.tell(study.ask(), values=[math.inf])
    study.tell(study.ask(), values=[4.75])
    assert study.best_value == 4.75
    with pytest.raises(ValueError, match="nan"):  # why not NaN
        study.tell(study.ask(), values=[math.nan])


def test_ctrl_c_between_two_jobs_of_a_sweep_is_one_line(monkeypatch, capsys, tmp_path):
    """The signal came while Hydra composed the next job, outside run_job: a 100-line traceback."""

    def composing_the_next_job(main):
        raise interrupts.Interrupted(signal.SIGINT)

    monkeypatch.setattr(cli, "_install_hydra_reporter", lambda: None)
    monkeypatch.setattr(cli, "_report_in_one_line", composing_the_next_job)
    monkeypatch.setattr(cli, "record_command", lambda argv: None)
    # The line the last job (a DAPT sweep's) made as it began.
    monkeypatch.setattr(cli, "_last_job", {"rerun": rerun_note(TRAIN, compose([], tmp_path), "hydra.sweep.dir")})
    launch = cli.entry_point(str(CONF), "train", "chipadapt.pipeline:train")
    with pytest.raises(SystemExit) as stop:
        launch()
    assert stop.value.code == 128 + signal.SIGINT
    assert capsys.readouterr().err == (
        "chipadapt: interrupted (SIGINT); what was complete is kept, a rerun with the same hydra.sweep.dir resumes "
        "from its last checkpoint (step 0 if none was written)\n"
    )


def test_an_optuna_study_goes_on_past_a_diverged_trial(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["hparams_search=dapt_optuna", "hydra.sweeper.n_trials=2", *TINY_FAST, "trainer.max_steps=1", SPOIL]
    done = run_entry("train.py", [*args, f"hydra.sweep.dir={sweep}"], env={"PYTHONPATH": "tests"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.count("chipadapt: error: training diverged: val/domain/loss is nan at step 1") == 2
    for job in ("0", "1"):  # the second trial ran after the first diverged
        assert read_manifest(sweep / job)["status"] == "failed" and not (sweep / job / "model").exists()
    assert "best_value: .inf" in (sweep / "optimization_results.yaml").read_text()
    assert "chipadapt: warning: 2 trial(s) diverged and count as the worst value: trial #0" in done.stderr


def test_a_grid_sweep_with_a_diverged_job_fails_at_its_end_and_a_search_warns(monkeypatch, capsys):
    """A grid with a diverged job is incomplete: exit 1 once the others ran (set -e scripts, SLURM)."""
    monkeypatch.setattr(cli, "_diverged_jobs", ["#1 (optim.lr=10000.0)"])
    with pytest.raises(SystemExit) as stopped:
        cli.exit_if_a_sweep_job_diverged()
    assert stopped.value.code == 1
    assert capsys.readouterr().err == (
        "chipadapt: error: 1 job(s) of this sweep diverged (the others completed): #1 (optim.lr=10000.0)\n"
    )
    monkeypatch.setattr(cli, "_diverged_jobs", ["trial #0 (optim.lr=10000.0)"])
    cli.exit_if_a_sweep_job_diverged()  # a search's result stands
    assert "warning: 1 trial(s) diverged" in capsys.readouterr().err
    monkeypatch.setattr(cli, "_diverged_jobs", [])
    cli.exit_if_a_sweep_job_diverged()


def test_ctrl_c_before_the_first_job_is_one_line(monkeypatch, capsys):
    """Before any job installs the handlers, Ctrl-C is Python's KeyboardInterrupt: it was a traceback."""

    def composing_the_first_job(main):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_install_hydra_reporter", lambda: None)
    monkeypatch.setattr(cli, "_report_in_one_line", composing_the_first_job)
    monkeypatch.setattr(cli, "record_command", lambda argv: None)
    monkeypatch.setattr(cli, "_last_job", {"rerun": None})
    launch = cli.entry_point(str(CONF), "train", "chipadapt.pipeline:train")
    with pytest.raises(SystemExit) as stop:
        launch()
    assert stop.value.code == 128 + signal.SIGINT
    assert capsys.readouterr().err == "chipadapt: interrupted (SIGINT) before a job started; no run was begun\n"
