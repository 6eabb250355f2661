"""What the search tells a trial whose launch raised (optuna_trial_outcome.py), and which RUNNING trials a
later run resumes. Before: a folder's manifest from an earlier command (its overrides a superset, or
started before this launch) was taken for this trial's result; an interrupt (exit 130) failed the batch;
submitit's UncompletedJobError left every trial RUNNING; a trial queued by SLURM under a search that died
was launched a second time; a hydra.sweep.subdir folder was not found; a manifest whose `config` is not a
mapping was a traceback. And the results named the wrong items for several metrics. Then (a second review):
a batch-mate that failed (OOM) was taken for the refused one and the completed mate after it failed; another
search's folder of the same overrides gave a trial its value; submitit's queued batch-mates were failed and
its error was a traceback; a requeued SLURM job's trial ran twice; two searches both ran a trial again; an
interrupt dropped a completed mate's value; retrieval val/ and perplexity aggregates named the wrong items."""

import datetime as dt
import json
from pathlib import Path

import optuna
import pytest
from helpers.optuna_sweeper import SPACE, FakeLauncher, basic_launcher_batch, states, sweeper
from omegaconf import OmegaConf

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
def test_an_interrupted_batch_stays_running_to_resume_and_its_completed_mate_keeps_its_value(tmp_path, code):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 2, n_jobs=2)
    search.config.optimized_metric = "val/domain/bpb"

    def interrupted(overrides, initial_job_idx):  # job 0 completed; Ctrl-C/SIGTERM in job 1 (cli.exit_interrupted)
        write_manifest(tmp_path / "sweep" / str(initial_job_idx), overrides[0], bpb=0.25)
        write_manifest(tmp_path / "sweep" / str(initial_job_idx + 1), overrides[1], status="interrupted")
        raise SystemExit(code)

    search.launcher.launch = interrupted
    with pytest.raises(SystemExit) as stop:
        search.sweep(search.arguments)
    assert stop.value.code == code
    trials = optuna.load_study(study_name="dapt", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING"] and trials[0].value == 0.25


class QueuingLauncher:
    """Not Hydra's basic launcher: its jobs run outside the search process (as submitit's SLURM jobs)."""

    def __init__(self, sweep_dir: Path):
        self.runs_here = FakeLauncher(sweep_dir)
        self.launched = self.runs_here.launched

    def launch(self, overrides, initial_job_idx):
        return self.runs_here.launch(overrides, initial_job_idx)


@pytest.mark.parametrize("mate", ["completed", "interrupted", "queued"])
def test_a_failed_submitit_job_is_one_line_and_its_batch_mates_are_told_only_what_their_folders_say(
    tmp_path, mate, capsys
):
    from submitit.core.utils import UncompletedJobError

    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 2, n_jobs=2)
    search.launcher = QueuingLauncher(tmp_path / "sweep")
    search.config.optimized_metric = "val/domain/bpb"

    def job_0_failed(overrides, initial_job_idx):  # job 0 failed on its node (no manifest); job 1 ran, or waits
        if mate != "queued":
            write_manifest(tmp_path / "sweep" / str(initial_job_idx + 1), overrides[1], status=mate, bpb=0.25)
        raise UncompletedJobError("Job 1_0 has not produced any output (state: FAILED)\nError stream produced:\n...")

    search.launcher.launch = job_0_failed
    with pytest.raises(SystemExit) as stop:
        search.sweep(search.arguments)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.count("chipadapt: error:") == 1 and "UncompletedJobError: Job 1_0" in err and "Traceback" not in err
    # Job 0's folder records nothing: refused, failed, or queued still (submitit waits for the jobs in
    # order): left RUNNING, so a job that runs later is not a trial the study has failed.
    trials = optuna.load_study(study_name="dapt", storage=storage).trials
    assert [t.state.name for t in trials] == ["RUNNING", "COMPLETE" if mate == "completed" else "RUNNING"]
    assert mate != "completed" or trials[1].value == 0.25


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
    search.config.hydra.sweep.subdir = "run_${hydra.job.num}"
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


@pytest.mark.parametrize("jobs_here", [False, None], ids=["slurm", "stored before the record"])
def test_a_trial_whose_job_ran_outside_the_search_is_not_run_again_on_a_free_folder_lock(tmp_path, caplog, jobs_here):
    from helpers.optuna_sweeper import killed_trial

    from chipadapt.optuna_resume import JOBS_HERE

    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = sweeper(tmp_path, storage, 2)
    first.sweep(first.arguments)
    killed = killed_trial(tmp_path, storage, jobs_here=bool(jobs_here))  # a requeued SLURM job: its lock free
    if jobs_here is None:  # a trial stored before chipadapt recorded where its jobs ran
        study = optuna.load_study(study_name="dapt", storage=storage)
        study._storage.set_trial_user_attr(killed._trial_id, JOBS_HERE, None)
    again = sweeper(tmp_path, storage, 3)
    again.sweep(again.arguments)
    assert again.launcher.launched == [] and states(storage) == ["COMPLETE", "COMPLETE", "RUNNING"]
    said = "may still be queued or requeued" if jobs_here is False else "does not record where its job ran"
    assert said in caplog.text and ("hydra/launcher=slurm" in caplog.text) == (jobs_here is False)


SPLITS = {"docs": {"held_out": 0.15}, "rtl": {"held_out": None}, "web": {"general": True}}
RETRIEVAL = {
    "retriever": {"heldout_fraction": 0.1},
    "reranker": {"heldout_fraction": 0.05},
    "data": {"val_fraction": 0.2},
}


@pytest.mark.parametrize(
    "metric, setting, said, unsaid",
    [
        (
            "val/in_batch_mrr",
            {"stage": {"name": "retriever"}, **RETRIEVAL},
            "retriever.heldout_fraction=0.1",
            "val_fraction",
        ),
        (
            "val/group_mrr",
            {"stage": {"name": "reranker"}, **RETRIEVAL},
            "reranker.heldout_fraction=0.05",
            "val_fraction",
        ),
        (
            "val/loss",
            {"stage": {"name": "reranker"}, **RETRIEVAL},
            "reranker's held-out synthetic query groups",
            "split",
        ),
        (
            "val/loss",
            {"stage": {"name": "dapt"}, **RETRIEVAL},
            "every validation split (data.val_fraction=0.2)",
            "'loss'",
        ),
        ("perplexity.domain_mean.bpb", {"eval": {"perplexity": {"splits": SPLITS}}}, "every document of 'rtl'", "web"),
        (
            "perplexity.domain_all.bpb",
            {"eval": {"perplexity": {"splits": SPLITS}}},
            "held-out documents of 'docs'",
            "web",
        ),
        ("perplexity.rtl.bpb", {"eval": {"perplexity": {"splits": SPLITS}}}, "held_out=null: scored whole", "held-out"),
        ("perplexity.web.bpb", {"eval": {"perplexity": {"splits": SPLITS}}}, "every document of 'web'", "held-out"),
        (
            "perplexity.docs.bpb",
            {
                "eval": {
                    "perplexity": {"splits": SPLITS, "max_tokens_per_document": 256, "max_chars_per_document": 4000}
                }
            },
            "max_tokens_per_document=256, eval.perplexity.max_chars_per_document=4000",
            "rtl",
        ),
    ],
)
def test_the_results_name_the_retrieval_and_perplexity_items_as_configured(tmp_path, metric, setting, said, unsaid):
    study = optuna.create_study(direction="minimize")
    for x, value in ((0.1, 1.0), (0.2, 2.0)):
        study.add_trial(optuna.trial.create_trial(params={"optim.lr": x}, distributions=SPACE, value=value))
    report(study, tmp_path, ["minimize"], OmegaConf.create({"optimized_metric": metric, "hydra": {}, **setting}))
    items = OmegaConf.load(tmp_path / "optimization_results.yaml").selection_bias.split("measured on (", 1)[1]
    assert said in items and unsaid not in items


def test_a_batch_mate_that_failed_is_not_taken_for_the_refused_one(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 3, n_jobs=3)
    search.config.optimized_metric = "val/domain/bpb"

    def oom_then_completed_then_refused(overrides, initial_job_idx):  # the basic launcher goes on after an OOM
        sweep = tmp_path / "sweep"
        write_manifest(sweep / str(initial_job_idx), overrides[0], status="failed", error="RuntimeError: CUDA OOM")
        write_manifest(sweep / str(initial_job_idx + 1), overrides[1], bpb=0.25)
        raise SystemExit(2)  # job 2 refused its input

    search.launcher.launch = oom_then_completed_then_refused
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    trials = optuna.load_study(study_name="dapt", storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "FAIL"] and trials[1].value == 0.25


def test_a_batch_mate_is_not_told_the_value_of_another_folder_of_the_same_overrides(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 2, n_jobs=2)
    search.config.optimized_metric = "val/domain/bpb"

    def refused_while_another_search_completes_the_same(overrides, initial_job_idx):
        # Another search process on the study drew trial 0's parameters too (TPE repeats) and completed
        # them in its own folder 7 after this launch began; job 0 here refused, job 1 never started.
        (tmp_path / "sweep" / "7").mkdir(parents=True)
        write_manifest(tmp_path / "sweep" / "7", overrides[0], bpb=0.01)
        raise SystemExit(2)

    search.launcher.launch = refused_while_another_search_completes_the_same
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    assert states(storage) == ["FAIL", "FAIL"]


def test_two_searches_do_not_both_run_a_trial_again(tmp_path, monkeypatch):
    from helpers.optuna_sweeper import killed_trial

    import chipadapt.optuna_search as optuna_search

    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = sweeper(tmp_path, storage, 2)
    first.sweep(first.arguments)
    killed_trial(tmp_path, storage, jobs_here=True)
    one, other = sweeper(tmp_path, storage, 3), sweeper(tmp_path, storage, 3)
    record = optuna_search.record

    def meanwhile(study, number, key, value):  # the other search looks at trial 2 between one's look and claim
        if key == optuna_search.CLAIM and not other.launcher.launched:
            other.sweep(other.arguments)
        record(study, number, key, value)

    monkeypatch.setattr(optuna_search, "record", meanwhile)
    one.sweep(one.arguments)
    assert [n for n, _ in one.launcher.launched] + [n for n, _ in other.launcher.launched] == [2]
    assert states(storage) == ["COMPLETE"] * 3


def test_a_manifest_of_this_launch_is_told_by_its_start_within_a_clock_tolerance():
    from chipadapt.optuna_trial_outcome import CLOCK_SKEW, CLOCK_TOLERANCE, launch_time, this_launch

    since = launch_time()
    local = since.replace(tzinfo=None)  # manifest.json's naive local time
    assert this_launch({"overrides": ["a=1"], "started": (local - CLOCK_TOLERANCE / 2).isoformat()}, ("a=1",), since)
    assert not this_launch(
        {"overrides": ["a=1"], "started": (local - 2 * CLOCK_TOLERANCE).isoformat()}, ("a=1",), since
    )
    utc = since.astimezone(dt.UTC)  # an aware time of another zone: within the clocks' skew alone
    assert this_launch({"overrides": ["a=1"], "started": (utc - CLOCK_SKEW / 2).isoformat()}, ("a=1",), since)
    assert not this_launch({"overrides": ["a=1"], "started": (utc - 2 * CLOCK_SKEW).isoformat()}, ("a=1",), since)
    assert CLOCK_SKEW < CLOCK_TOLERANCE  # an aware time does not differ by the zone it was read in
