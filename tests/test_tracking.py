"""Sweeps and run tracking (issue 19): one W&B run per job with the job's config, group, name and
history; evaluate and merge runs logged with their results and model fingerprint; one manifest
schema for every entry point; compare.py over train and merge multiruns; an Optuna search; SLURM
requeue with exact resume; progress lines without a terminal; --help without torch."""

import csv
import io
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT, TINY_FAST, compose, read_manifest, run_train, write_jsonl
from helpers.entry_jobs import entry_job
from helpers.models import perturbed_copy
from helpers.wandb_records import read_run

from chipadapt.loggers.identity import sweep_group
from chipadapt.loggers.job import numeric_items

STEPS = ["trainer.max_steps=2", "data.val_max_bytes=128", "stage.validate_before=false"]


def run_script(
    script: str, args: list[str], timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "WANDB_SILENT": "true", **(env or {})},
    )


def wandb_runs(folder):
    return [read_run(run) for run in sorted(folder.glob("wandb/offline-run-*"))]


def history_values(run, key):
    return [row[key] for row in run["history"] if key in row]


@pytest.fixture(scope="module")
def train_sweep(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("train_sweep") / "sweep"
    proc = run_train(
        ["-m", *TINY_FAST, *STEPS, "logger=wandb", "optim.lr=1e-4,5e-6", f"hydra.sweep.dir={sweep}"], timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """The tiny model as `instruct` and a perturbed copy as `chip`."""
    from chipadapt.models.hf_folder import resolve_model_folder

    root = tmp_path_factory.mktemp("pair")
    instruct = resolve_model_folder(compose(["model=tiny"], root).model)
    return perturbed_copy(instruct, root / "chip"), instruct


@pytest.fixture(scope="module")
def merge_sweep(tmp_path_factory, tiny_pair):
    chip, instruct = tiny_pair
    root = tmp_path_factory.mktemp("merge_sweep")
    prompts = write_jsonl(
        root / "if.jsonl",
        [
            {
                "key": 1,
                "prompt": "Say hi without commas.",
                "instruction_id_list": ["punctuation:no_comma"],
                "kwargs": [{}],
            },
            {
                "key": 2,
                "prompt": "Name a color without commas.",
                "instruction_id_list": ["punctuation:no_comma"],
                "kwargs": [{}],
            },
        ],
    )
    sweep = root / "sweep"
    proc = run_script(
        "merge.py",
        [
            "-m",
            "merge.lam=0,1",
            f"models.chip={chip}",
            f"models.instruct={instruct}",
            "logger=wandb",
            "++preset=chipadapt",
            "eval=[perplexity,ifeval]",
            "eval.perplexity.max_documents=1",
            f"eval.ifeval.path={prompts}",
            f"eval.ifeval.nltk_data={root}",
            "eval.ifeval.max_new_tokens=4",
            f"hydra.sweep.dir={sweep}",
        ],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


@pytest.fixture(scope="module")
def evaluate_run(tmp_path_factory):
    """evaluate.py's job, run in this process."""
    from chipadapt.eval.run import run

    run_dir = tmp_path_factory.mktemp("evaluate") / "run"
    overrides = ["model=tiny", "eval=[perplexity]", "eval.perplexity.max_documents=1", "logger=wandb"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_SILENT", "true")
        with entry_job("evaluate", overrides, run_dir) as cfg:
            run(cfg)
    return run_dir


@pytest.mark.integration
def test_a_two_job_wandb_multirun_gives_two_runs_with_config_group_names_and_history(train_sweep):
    runs = {job: wandb_runs(train_sweep / job) for job in ("0", "1")}
    assert all(len(r) == 1 for r in runs.values())  # one W&B run per job, in the job's folder
    first, second = runs["0"][0], runs["1"][0]
    assert first["config"]["optim"]["lr"] == 1e-4 and second["config"]["optim"]["lr"] == 5e-6  # the resolved config
    assert first["config"]["model"]["name"] == "tiny" and "trainer" in first["config"] and "data" in first["config"]
    assert first["run"].run_group == second["run"].run_group == sweep_group(train_sweep)  # the sweep's own group
    assert sweep_group(train_sweep).startswith(f"{train_sweep.parent.name}_sweep_")  # readable, then a hash
    # Named after what the sweep varies (the overrides every job shares are left out).
    assert (first["run"].display_name, second["run"].display_name) == ("optim.lr=0.0001", "optim.lr=5e-06")
    assert first["run"].job_type == "train" and {"dapt", "tiny", "base"} <= set(first["run"].tags)
    for run in (first, second):  # each its own curve: two optimizer steps, from step 0
        assert len(history_values(run, "train/loss")) == 2
        assert sorted(history_values(run, "trainer/global_step"))[0] == 0
    assert history_values(first, "train/loss") != history_values(second, "train/loss")


@pytest.mark.integration
def test_evaluate_logs_results_and_the_evaluated_models_fingerprint(evaluate_run):
    manifest = read_manifest(evaluate_run)
    assert manifest["kind"] == "evaluate" and manifest["status"] == "completed"
    logged = numeric_items(manifest["results"])  # every numeric result, as sent to the loggers
    (key,) = [k for k in logged if k.startswith("perplexity/domain.") and k.endswith("bpb")]
    (run,) = wandb_runs(evaluate_run)
    assert run["run"].job_type == "eval"
    assert run["config"]["evaluated_model"]["fingerprint"] == manifest["inputs"]["model"]["fingerprint"]
    assert history_values(run, key) == [pytest.approx(logged[key])] and logged[key] > 0
    assert history_values(run, "items/perplexity_items/_type") == ["table-file"]  # per-item scores as a wandb.Table


@pytest.mark.integration
def test_merge_jobs_log_results_model_fingerprint_items_and_the_sweep_plot(merge_sweep):
    for job in ("0", "1"):
        manifest = read_manifest(merge_sweep / job)
        assert manifest["kind"] == "merge" and manifest["status"] == "completed"
        assert manifest["inputs"]["output"]["fingerprint"] and manifest["inputs"]["models.chip"]["fingerprint"]
        (run,) = wandb_runs(merge_sweep / job)
        assert run["run"].job_type == "merge" and "chipalign" in run["run"].tags
        assert run["config"]["output_model"]["fingerprint"] == manifest["inputs"]["output"]["fingerprint"]
        assert history_values(run, "ifeval/prompt_loose") == [manifest["results"]["ifeval"]["prompt_loose"]]
        assert history_values(run, "items/ifeval_items/_type") == ["table-file"]  # per-item results as a wandb.Table
        assert history_values(run, "items/ifeval_items/nrows") == [2]
    # Two lambdas, two different merged models: the fingerprint is of the content.
    assert len({read_manifest(merge_sweep / job)["inputs"]["output"]["fingerprint"] for job in ("0", "1")}) == 2
    (report,) = [read_run(r) for r in merge_sweep.glob("wandb/offline-run-*")]
    assert (
        report["run"].job_type == "sweep_report"
        and report["run"].run_group == read_run(next((merge_sweep / "0").glob("wandb/offline-run-*")))["run"].run_group
    )
    assert history_values(report, "sweep_report/plot/_type") == ["image-file"]


@pytest.mark.integration
def test_every_entry_point_writes_a_manifest_with_the_same_schema(
    train_sweep, merge_sweep, evaluate_run, tmp_path, monkeypatch
):
    from chipadapt.chat import run as chat

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # the session ends at once, as on Ctrl-D
    with entry_job("chat", ["model=tiny", "generate.max_new_tokens=2"], tmp_path / "chat") as cfg:
        chat(cfg)
    manifests = {
        "train": read_manifest(train_sweep / "0"),
        "merge": read_manifest(merge_sweep / "0"),
        "evaluate": read_manifest(evaluate_run),
        "chat": read_manifest(tmp_path / "chat"),
    }
    keys = {kind: list(m) for kind, m in manifests.items()}
    assert len({tuple(k) for k in keys.values()}) == 1, keys
    for kind, manifest in manifests.items():
        assert manifest["kind"] == kind and manifest["schema"] == 2 and manifest["status"] == "completed"
        assert manifest["git"].keys() == {"commit", "dirty"} and manifest["wall_s"] >= 0
        model = manifest["inputs"]["model" if kind != "merge" else "models.chip"]
        assert model["fingerprint"] and model["tokenizer_fingerprint"]
    assert "optim.lr=0.0001" in manifests["train"]["overrides"]
    assert any(key.startswith("data.sources.") for key in manifests["train"]["inputs"])


@pytest.mark.integration
def test_compare_reads_a_train_multirun_from_its_manifests(train_sweep, tmp_path):
    out = tmp_path / "cmp"
    proc = run_script(
        "compare.py", [f"runs=[{train_sweep}]", "metrics=[val/domain/bpb,val/general/bpb]", f"hydra.run.dir={out}"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["optim.lr"] for r in rows] == ["5e-06", "0.0001"]  # sorted along the swept key
    assert all(float(r["val/domain/bpb"]) > 0 and r["kind"] == "train" for r in rows)
    assert (out / "compare.md").read_text().splitlines()[0] == "| run | val/domain/bpb | val/general/bpb |"
    assert (out / "compare_curve.png").stat().st_size > 1000 and (out / "compare_pareto.png").stat().st_size > 1000
    # Again in the same folder with one metric: no Pareto plot of the earlier comparison is left beside it.
    from chipadapt.eval.compare import compare

    with entry_job("compare", [f"runs=[{train_sweep}]", "metrics=[val/domain/bpb]"], out) as cfg:
        compare(cfg)  # compare.py's job, in this process
    assert not (out / "compare_pareto.png").exists() and (out / "compare_curve.png").is_file()
    assert (out / "compare.md").read_text().splitlines()[0] == "| run | val/domain/bpb |"


@pytest.mark.integration
def test_compare_reads_a_merge_multirun_and_rejects_an_empty_folder(merge_sweep, tmp_path):
    out = tmp_path / "cmp"
    from chipadapt.eval.compare import compare

    with entry_job("compare", [f"runs=[{merge_sweep}]"], out) as cfg:
        compare(cfg)  # compare.py's job, in this process (the command's exit status: the train multirun's test)
    table = (out / "compare.md").read_text().splitlines()
    assert "ifeval.prompt_loose" in table[0] and "perplexity.domain.bpb" in table[0]
    assert table[2].startswith("| merge.lam=0 |") and table[3].startswith("| merge.lam=1 |")
    assert (out / "compare_curve.png").stat().st_size > 1000
    (tmp_path / "empty").mkdir()
    proc = run_script("compare.py", [f"runs=[{tmp_path / 'empty'}]", f"hydra.run.dir={tmp_path / 'cmp2'}"])
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.startswith("chipadapt: error:")] == [
        f"chipadapt: error: compare.runs: {tmp_path / 'empty'} holds no run "
        "(no manifest.json or results.json in it or in its sub-folders)"
    ]


@pytest.mark.integration
def test_an_optuna_search_kept_in_sqlite_goes_on_across_invocations_and_returns_the_metric(tmp_path):
    def search(folder: str, trials: int) -> list[str]:
        return [
            *TINY_FAST,
            "trainer.max_steps=1",
            "data.val_max_bytes=128",
            "stage.validate_before=false",
            "hparams_search=dapt_optuna",
            f"hydra.sweeper.n_trials={trials}",
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}",
            f"hydra.sweep.dir={tmp_path / folder}",
        ]

    # The two invocations one after the other in one process (each fresh train.py spent seconds importing): what
    # the second knows of the first is what the sqlite file kept, as between two commands.
    # n_trials is the study's total: the second adds one.
    lines = [*search("first", 1), "---", *search("second", 2)]
    proc = run_script("tests/helpers/command_lines.py", ["train.py", *lines])
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = [line for line in proc.stdout.splitlines() if line.startswith("command line ")]
    assert statuses == ["command line 1: exit 0", "command line 2: exit 0"], proc.stderr[-3000:]
    values = {}
    for sweep in (tmp_path / "first", tmp_path / "second"):
        for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
            manifest = read_manifest(job)
            assert manifest["config"]["optimized_metric"] == "val/domain/bpb"
            values[f"{sweep.name}/{job.name}"] = manifest["metrics"]["after"]["domain"]["bpb"]
    assert len(values) == 2
    result = yaml.safe_load((tmp_path / "second" / "optimization_results.yaml").read_text())
    assert result["completed_trials"] == 2  # the study of the first invocation went on in the second
    assert result["best_value"] == pytest.approx(min(values.values()))  # main returned each trial's metric
    assert {"optim.lr", "optim.scheduler.num_warmup_steps", "data.sources.docs.weight"} <= set(result["best_params"])


def test_an_unknown_optimized_metric_is_one_line_naming_the_metrics_there_are(tmp_path):
    from chipadapt.errors import ChipadaptError
    from chipadapt.optimized_metric import optimized_value

    cfg = compose([*TINY_FAST, *STEPS, "optimized_metric=val/domain/bpb"], tmp_path)
    (tmp_path / "manifest.json").write_text(
        json.dumps({"kind": "train", "metrics": {"after": {"domain": {"bpb": 1.5}}}})
    )
    assert optimized_value(cfg) == 1.5
    cfg.optimized_metric = "val/domian/bpb"
    with pytest.raises(
        ChipadaptError, match="optimized_metric: 'val/domian/bpb' is not a metric of this run .*val/domain/bpb"
    ):
        optimized_value(cfg)
    # Written as null (an infinite perplexity after a huge loss; strict JSON): NaN, which a sweep's job
    # turns into the worst value so that an Optuna study goes on, not "not a metric of this run".
    (tmp_path / "manifest.json").write_text(
        json.dumps({"kind": "train", "metrics": {"after": {"domain": {"bpb": 9.5, "ppl": None}}}})
    )
    cfg.optimized_metric = "val/domain/ppl"
    assert math.isnan(optimized_value(cfg))


def losses(run_dir) -> dict[int, float]:
    with open(run_dir / "metrics.csv") as handle:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")}


def test_slurm_requeue_signal_checkpoints_at_the_step_requeues_and_the_rerun_continues_exactly(tmp_path, monkeypatch):
    from chipadapt import interrupts
    from chipadapt.pipeline import train

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    (fake / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    common = [
        *TINY_FAST,
        "trainer.max_steps=6",
        "stage.validate_before=false",
        "callbacks.checkpoint.every_n_train_steps=100",
    ]
    train(compose(common, tmp_path / "whole"))

    cut = tmp_path / "cut"
    signal_at = [
        "+callbacks.signal._target_=helpers.kill.KillAtStep",
        "+callbacks.signal.step=3",
        "+callbacks.signal.sig=SIGUSR2",
    ]
    with pytest.raises(interrupts.Interrupted):
        train(compose([*common, *signal_at], cut))
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert read_manifest(cut)["status"] != "completed" and not (cut / "model").exists()
    saved = torch.load(cut / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert saved in (3, 4)  # the step boundary after the signal (every_n_train_steps=100 never saved)

    monkeypatch.delenv("SLURM_JOB_ID")
    resumed = train(compose(common, cut))  # the requeued job: same folder, same config
    assert resumed["global_step"] == 6
    reference, again = losses(tmp_path / "whole"), losses(cut)
    assert sorted(again) == list(range(6))  # no step trained twice, none skipped
    for step in range(6):
        assert again[step] == pytest.approx(reference[step], rel=1e-5), step


def test_without_a_terminal_training_prints_a_line_every_n_steps(tmp_path, caplog):
    import logging

    from chipadapt.pipeline import train

    overrides = [
        *[o for o in TINY_FAST if not o.startswith("callbacks.progress")],
        "trainer.max_steps=4",
        "stage.validate_before=false",
        "callbacks.progress.every_n_steps=2",
        "+callbacks.progress.terminal=false",
    ]
    with caplog.at_level(logging.INFO, logger="chipadapt.progress"):
        train(compose(overrides, tmp_path))
    lines = [r.getMessage() for r in caplog.records if r.name == "chipadapt.progress"]
    steps = [line for line in lines if line.startswith("step ")]
    assert [line.split(" | ")[0] for line in steps] == ["step 2/4", "step 4/4"]
    assert all(" | loss " in line and " | tokens/s " in line and " | eta " in line for line in steps)
    assert any(line.startswith("validation at step 4: ") and "val/domain/bpb" in line for line in lines)


def test_help_does_not_import_torch():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "train.py"), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "hydra" in imported and not {"torch", "lightning", "transformers"} & imported
