"""What the search tells a trial whose launch raised (optuna_trial_outcome.py), and which RUNNING trials a
later run resumes. Before: a folder's manifest from an earlier command (its overrides a superset, or
started before this launch) was taken for this trial's result; an interrupt (exit 130) failed the batch;
submitit's UncompletedJobError left every trial RUNNING; a trial queued by SLURM under a search that died
was launched a second time; a hydra.sweep.subdir folder was not found; a manifest whose `config` is not a
mapping was a traceback. And the results named the wrong items for several metrics."""

import datetime as dt
import json
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from test_optuna_search import SPACE, FakeLauncher, basic_launcher_batch, states, sweeper

from chipadapt.io.lock import run_folder_lock
from chipadapt.optuna_results import report

NOW = "now"


def write_manifest(folder: Path, overrides, status: str = "completed", bpb: float = 0.5, started: str = NOW, **more):
    started = dt.datetime.now().isoformat(timespec="seconds") if started == NOW else started
    with run_folder_lock(folder):
        manifest = {"kind": "train", "status": status, "error": None, "overrides": list(overrides)}
        manifest |= {"started": started, "config": {}, "metrics": {"after": {"domain": {"bpb": bpb}}}, **more}
        (folder / "manifest.json").write_text(json.dumps(manifest))


def in_memory_studies(monkeypatch) -> list[optuna.Study]:
    made, create = [], optuna.create_study

    def keep(**kwargs):
        made.append(create(**kwargs))
        return made[-1]

    monkeypatch.setattr(optuna, "create_study", keep)
    return made


@pytest.mark.parametrize("extra", [["trainer.max_steps=50"], []], ids=["more overrides", "same, earlier"])
def test_an_earlier_commands_manifest_is_not_the_refused_launchs_result(tmp_path, monkeypatch, extra):
    made = in_memory_studies(monkeypatch)
    earlier = sweeper(tmp_path, None, 2, n_jobs=2)
    earlier.config.optimized_metric = "val/domain/bpb"

    def completes(overrides, initial_job_idx):  # an earlier command: its manifests started long ago
        for index, override in enumerate(overrides, start=initial_job_idx):
            write_manifest(
                tmp_path / "sweep" / str(index), [*override, *extra], bpb=0.123, started="2020-01-01T00:00:00"
            )
        return [type("Returned", (), {"return_value": 0.123})() for _ in overrides]

    earlier.launcher.launch = completes
    earlier.sweep(earlier.arguments)
    again = sweeper(tmp_path, None, 2, n_jobs=2)
    again.config.optimized_metric = "val/domain/bpb"

    def refuses(overrides, initial_job_idx):
        raise SystemExit(2)  # job 0 refused its input; job 1 never started

    again.launcher.launch = refuses
    with pytest.raises(SystemExit):
        again.sweep(again.arguments)
    assert [t.state.name for t in made[-1].trials] == ["FAIL", "FAIL"]


@pytest.mark.parametrize("code", [130, 143])
def test_an_interrupted_batch_stays_running_to_resume(tmp_path, code):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 2, n_jobs=2)
    search.config.optimized_metric = "val/domain/bpb"

    def interrupted(overrides, initial_job_idx):  # job 0 completed; Ctrl-C/SIGTERM in job 1 (cli.exit_interrupted)
        write_manifest(tmp_path / "sweep" / str(initial_job_idx), overrides[0])
        write_manifest(tmp_path / "sweep" / str(initial_job_idx + 1), overrides[1], status="interrupted")
        raise SystemExit(code)

    search.launcher.launch = interrupted
    with pytest.raises(SystemExit) as stop:
        search.sweep(search.arguments)
    assert stop.value.code == code
    assert states(storage) == ["RUNNING", "RUNNING"]


@pytest.mark.parametrize("mate", ["completed", "interrupted"])
def test_a_failed_submitit_job_fails_alone_and_its_batch_mates_are_told_their_folders(tmp_path, mate):
    from submitit.core.utils import UncompletedJobError

    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 2, n_jobs=2)
    search.config.optimized_metric = "val/domain/bpb"

    def job_0_exits_2(overrides, initial_job_idx):  # job 0 refused (no manifest); job 1 ran on a node
        write_manifest(tmp_path / "sweep" / str(initial_job_idx + 1), overrides[1], status=mate, bpb=0.25)
        raise UncompletedJobError("Job 1_0 has not produced any output (state: FAILED)")

    search.launcher.launch = job_0_exits_2
    with pytest.raises(UncompletedJobError):
        search.sweep(search.arguments)
    trials = optuna.load_study(study_name="dapt", storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE" if mate == "completed" else "RUNNING"]
    assert mate != "completed" or trials[1].value == 0.25


class QueuingLauncher:
    """Not Hydra's basic launcher: its jobs run outside the search process (as submitit's SLURM jobs)."""

    def __init__(self, sweep_dir: Path):
        self.runs_here = FakeLauncher(sweep_dir)
        self.launched = self.runs_here.launched

    def launch(self, overrides, initial_job_idx):
        return self.runs_here.launch(overrides, initial_job_idx)


@pytest.mark.parametrize("launcher", ["basic", "slurm"])
def test_a_never_started_trial_of_a_dead_search_runs_again_only_when_its_job_died_with_it(tmp_path, launcher, caplog):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    killed = sweeper(tmp_path, storage, 1)
    if launcher == "slurm":
        killed.launcher = QueuingLauncher(tmp_path / "sweep")

    def dies(overrides, initial_job_idx):
        raise KeyboardInterrupt  # the search is killed; a SLURM job of it may still wait in the queue

    killed.launcher.launch = dies
    with pytest.raises(KeyboardInterrupt):
        killed.sweep(killed.arguments)
    again = sweeper(tmp_path, storage, 1)
    if launcher == "slurm":
        again.launcher = QueuingLauncher(tmp_path / "sweep")
    again.sweep(again.arguments)
    if launcher == "basic":
        assert [number for number, _ in again.launcher.launched] == [0] and states(storage) == ["COMPLETE"]
    else:  # not submitted twice
        assert again.launcher.launched == [] and states(storage) == ["RUNNING"]
        assert "may still be queued" in caplog.text


def test_a_batch_mate_in_a_folder_named_by_hydra_sweep_subdir_keeps_its_value(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 2, n_jobs=2)
    search.config.optimized_metric = "val/domain/bpb"
    basic_launcher_batch(search, {1}, folder_name=lambda index: f"run_{index}")
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    trials = optuna.load_study(study_name="dapt", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"]
    assert trials[0].value == pytest.approx(trials[0].params["optim.lr"])


def test_a_manifest_whose_config_is_not_a_mapping_fails_its_trial_in_one_line(tmp_path, caplog):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 2, n_jobs=2)
    search.config.optimized_metric = "val/domain/bpb"

    def odd(overrides, initial_job_idx):
        write_manifest(tmp_path / "sweep" / str(initial_job_idx), overrides[0], config=["not", "a", "mapping"])
        raise SystemExit(2)

    search.launcher.launch = odd
    with pytest.raises(SystemExit) as stop:
        search.sweep(search.arguments)
    assert stop.value.code == 2  # the job's exit, not an AttributeError
    assert states(storage) == ["FAIL", "FAIL"] and "`config` is not a mapping" in caplog.text


PERPLEXITY = {"splits": {"domain": {"held_out": 0.15}}, "max_documents": 40, "max_tokens": None}


@pytest.mark.parametrize(
    "metric, setting, items",
    [
        ("perplexity.domain.bpb", {"eval": {"perplexity": PERPLEXITY}}, "eval.perplexity.splits.domain.held_out=0.15"),
        ("perplexity.domain.bpb", {"eval": {"perplexity": PERPLEXITY}}, "eval.perplexity.max_documents=40"),
        ("eda_script.rougeL", {"eval": {"eda_script": {"eval_fraction": 0.2, "limit": None}}}, "eval_fraction=0.2"),
        ("chip_mcq.accuracy", {"eval": {"chip_mcq": {"max_per_subject": 5, "limit": None}}}, "first 5 of each"),
        ("train_loss", {}, "the items the metric was computed on"),
        (
            "retrieval.synthetic_heldout.finetuned.mrr@10",
            {"stage": {"name": "reranker"}, "reranker": {"heldout_fraction": 0.05}},
            "reranker.heldout_fraction=0.05",
        ),
    ],
)
def test_the_results_name_the_items_each_kind_of_metric_is_measured_on(tmp_path, metric, setting, items):
    study = optuna.create_study(direction="minimize")
    for x, value in ((0.1, 1.0), (0.2, 2.0)):
        study.add_trial(optuna.trial.create_trial(params={"optim.lr": x}, distributions=SPACE, value=value))
    report(study, tmp_path, ["minimize"], OmegaConf.create({"optimized_metric": metric, "hydra": {}, **setting}))
    assert items in OmegaConf.load(tmp_path / "optimization_results.yaml").selection_bias
