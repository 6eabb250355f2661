"""evaluate, chat, curate, reproduce and the model loaders: one line for bad input, nothing lost."""

import logging
import shutil
from pathlib import Path

import pytest
import torch
from helpers.entry_fault_lines import refused_lines
from helpers.fault_jobs import refused_here, run_here
from helpers.faults import ROOT, assert_unchanged, assert_user_error, run_entry, snapshot
from helpers.models import tiny_model_copy

from chipadapt.errors import ChipadaptError
from chipadapt.io.outputs import HOST


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A good tiny model folder, and a copy whose weights exist only as a pickle."""
    root = tmp_path_factory.mktemp("entry_faults")
    good = tiny_model_copy(root, "good")
    pickled = root / "pickled"
    shutil.copytree(good, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    return good, pickled


def test_evaluate_refuses_a_pickle_only_model(folders, tmp_path):
    """Refused by the folder's file names, never by loading the pickle: the command line before its heavy
    imports (tests/test_fast_refusals.py times that), the job with its default loggers in-process."""
    _, pickled = folders
    before = snapshot(pickled)
    args = [f"model.path={pickled}", "eval=[perplexity]"]
    proc = run_entry("evaluate.py", [*args, "logger.csv=null", f"hydra.run.dir={tmp_path / 'run'}"])
    assert_user_error(proc, "pickled weights", before=before)
    refused_here("evaluate", args, tmp_path / "job", "pickled weights", before=before)


def test_evaluate_bad_mcq_file(folders, tmp_path):
    good, _ = folders
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(b'{"question": "q", "choices": ["a", "b"], "answer": 0}\n\xff\xfe\n')
    before = snapshot(questions, good)
    overrides = [f"model.path={good}", "eval=[mcq]", f"eval.mcq.path={questions}"]
    refused_here("evaluate", overrides, tmp_path / "run", "q.jsonl:2", before=before)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["eval=[nope]"], "eval/nope'. (available: bug_summary, chip_mcq"),
        (["device=tpu9"], "device: 'tpu9' is not a device"),
    ],
)
def test_evaluate_config_errors(tmp_path, args, fragment):
    assert_user_error(run_entry("evaluate.py", [*args, f"hydra.run.dir={tmp_path / 'run'}"]), fragment)


@pytest.mark.parametrize(
    "args, fragment", [(["model.path=/does/not/exist"], "model.path"), (["+eval.perplexity.colour=1"], "colour")]
)
def test_evaluate_config_errors_found_by_the_job(tmp_path, args, fragment):
    """Refused after the job's imports (seconds a process each): the line each would print, in-process; the
    command line's contract for such a refusal: test_evaluate_refuses_a_pickle_only_model."""
    refused_here("evaluate", args, tmp_path / "run", fragment)


def test_chat_refuses_a_pickle_only_model(folders, tmp_path):
    """chat.py's job, in-process (the command line's one-line refusals: test_chat_unknown_group_option and
    evaluate.py's of the same loader, test_evaluate_refuses_a_pickle_only_model)."""
    _, pickled = folders
    refused_here("chat", [f"model.path={pickled}"], tmp_path / "run", "pickled weights", before=snapshot(pickled))


def test_chat_unknown_group_option(tmp_path):
    assert_user_error(run_entry("chat.py", ["retrieval=nope", f"hydra.run.dir={tmp_path / 'run'}"]), "retrieval/nope")


def test_curate_missing_input(tmp_path):
    proc = run_entry(
        "-m chipadapt.data.curate", [f"data.curate.inputs=[{tmp_path / 'nope'}]", f"hydra.run.dir={tmp_path / 'run'}"]
    )
    assert_user_error(proc, "does not exist")


def _raw_folder(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "alu.v").write_text("module alu(input a, output y);\n  assign y = ~a;\nendmodule\n" * 3)
    (raw / "notes.md").write_text("# Timing\nThe ALU closes timing at 1 GHz after retiming the carry chain.\n")
    return raw


def test_curate_rerun_needs_overwrite_and_a_killed_run_publishes_nothing(tmp_path):
    raw, run = _raw_folder(tmp_path), tmp_path / "run"
    # What a SIGKILLed curation leaves: only its hidden staging folder (pid gone), never part-*.jsonl.
    stale = run / f".corpus.999999999-{HOST}.x.tmp" / "handwritten"
    stale.mkdir(parents=True)
    (stale / "part-00000.jsonl").write_text('{"text": "half a run"}\n')
    first = run_entry(
        "-m chipadapt.data.curate", [f"data.curate.inputs=[{raw}]", "data.curate.workers=1", f"hydra.run.dir={run}"]
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert not stale.parent.exists()
    corpus = run / "corpus"
    assert "half a run" not in "".join(p.read_text() for p in corpus.rglob("part-*.jsonl"))
    before = snapshot(corpus, raw)
    again = run_entry(
        "-m chipadapt.data.curate", [f"data.curate.inputs=[{raw}]", "data.curate.workers=1", f"hydra.run.dir={run}"]
    )
    assert_user_error(again, "overwrite=true", before=before)


def test_curate_into_its_own_input(tmp_path):
    raw = _raw_folder(tmp_path)
    before = snapshot(raw)
    proc = run_entry("-m chipadapt.data.curate", [f"data.curate.inputs=[{raw}]", f"hydra.run.dir={raw}"])
    assert_user_error(proc, "is data.curate.inputs[0]", before=before)  # the run-folder guard, first
    proc = run_entry("-m chipadapt.data.curate", [f"data.curate.inputs=[{raw}]", f"hydra.run.dir={raw / 'run'}"])
    assert_user_error(proc, "inside data.curate.inputs", before=before)


@pytest.mark.parametrize("args, fragment", [(["variant=nope"], "variant/nope"), (["dry_run=maybe"], "dry_run")])
def test_reproduce_config_errors(tmp_path, args, fragment):
    assert_user_error(run_entry("reproduce.py", [*args, f"hydra.run.dir={tmp_path / 'run'}"]), fragment)


def test_every_loader_refuses_pickles_and_missing_heads(folders):
    from chipadapt.models.hf_folder import load_causal_lm
    from chipadapt.modules.attribute_model import load_attribute_model
    from chipadapt.retrieval.encoder import TextEncoder

    good, pickled = folders
    before = snapshot(good, pickled)
    with pytest.raises(ChipadaptError, match="pickled weights"):
        load_causal_lm(pickled, "float32", "sdpa", key="judge.model_path")
    with pytest.raises(ChipadaptError, match="pickled weights"):
        TextEncoder(pickled, "mean", "", "", 16, 32)
    with pytest.raises(ChipadaptError, match="pickled weights"):
        load_attribute_model(pickled)
    # A causal LM is not a trained attribute model: its regression head would be random.
    with pytest.raises(ChipadaptError, match="lacks trained weights for score"):
        load_attribute_model(good)
    assert (
        load_attribute_model(good, ["quality", "humor"], pad_token_id=0).num_labels == 2
    )  # a new head, as training wants
    assert_unchanged(before)


def test_tokenizer_stage_after_a_kill_and_its_rerun(tmp_path, caplog):
    """train.py's tokenizer stage, its job in-process (a train.py process each spent seconds importing)."""
    run = tmp_path / "run"
    stale = run / f".model.999999999-{HOST}.ab.tmp"  # what a SIGKILLed build leaves: its staging folder only
    stale.mkdir(parents=True)
    (stale / "tokenizer.json").write_text("{half")
    args = ["stage=tokenizer", "model=tiny", "tokenizer=augmented_small"]
    run_here("train", args, run)
    assert not stale.exists() and (run / "model" / "tokenizer.json").is_file()
    before = snapshot(run / "model")
    # The same command again: the finished build is passed, as a training run's is (its build keyed from
    # the inputs as they are now; other settings or inputs are refused: test_tokenizer_augment.py).
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="chipadapt.pipeline"):
        run_here("train", args, run)
    assert "completed before" in caplog.text
    assert snapshot(run / "model") == before


def test_another_commands_run_folder_is_refused_before_hydra_writes_to_it(folders, tmp_path):
    import json

    good, _ = folders
    run = tmp_path / "train_run"  # what train.py leaves: its manifest and Hydra's records
    (run / ".hydra").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"kind": "train", "status": "completed"}))
    (run / ".hydra" / "overrides.yaml").write_text("- optim.lr=3e-5\n")
    before = snapshot(run)
    proc = run_entry("evaluate.py", [f"model.path={good}", "eval=[perplexity]", f"hydra.run.dir={run}"])
    assert_user_error(proc, "hydra.run.dir:", "holds a train run", before=before)
    assert sorted(p.name for p in run.rglob("*")) == [".hydra", "manifest.json", "overrides.yaml"]


@pytest.mark.parametrize(
    "script,args,key",
    [
        ("train.py", ["stage=tokenizer", "model=tiny", "tokenizer=augmented_small"], "hydra.run.dir"),
        ("reproduce.py", ["variant=smoke", "dry_run=true"], "out"),
    ],
)
def test_a_folder_of_no_run_is_refused_before_anything_is_written_into_it(tmp_path, script, args, key):
    user = tmp_path / "project"  # a user's own folder, with a subfolder that bears a step's name
    (user / "tokenizer").mkdir(parents=True)
    (user / "tokenizer" / "vocab.txt").write_text("mine\n")
    (user / "notes.md").write_text("# my notes\n")
    before = snapshot(user)
    folder = [f"out={user}"] if key == "out" else [f"hydra.run.dir={user}"]
    proc = run_entry(script, [*args, *folder])
    assert_user_error(proc, f"{key}:", "holds files of no chipadapt run", before=before)
    assert sorted(p.relative_to(user).as_posix() for p in user.rglob("*")) == [
        "notes.md",
        "tokenizer",
        "tokenizer/vocab.txt",
    ]


def _evaluate_sweep(sweep: Path) -> None:
    import json

    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  job:\n    name: evaluate\n")
    (sweep / "0" / "manifest.json").write_text(json.dumps({"kind": "evaluate", "status": "completed"}))
    (sweep / "0" / "metrics.csv").write_text("step,perplexity.domain.bpb\n0,1.5\n")


def _users_folder(sweep: Path) -> None:
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "metrics.csv").write_text("mine\n")


def _users_results(sweep: Path) -> None:
    sweep.mkdir()
    (sweep / "results.csv").write_text("mine\n")


@pytest.mark.parametrize(
    "make,message",
    [
        (_evaluate_sweep, "holds a evaluate sweep; train would replace its records"),
        (_users_folder, "0 holds files of no chipadapt run; a job of this sweep would write"),
        (_users_results, "holds files of no chipadapt sweep (no multirun.yaml)"),
    ],
)
def test_a_sweep_into_another_commands_sweep_or_a_users_folder_is_refused_before_any_job(tmp_path, make, message):
    sweep = tmp_path / "sweep"
    make(sweep)
    before = snapshot(sweep)
    proc = run_entry("train.py", ["-m", "model=tiny", "optim.lr=1e-3,1e-4", f"hydra.sweep.dir={sweep}"])
    assert_user_error(proc, "hydra.sweep.dir:", message, before=before)
    assert set(snapshot(sweep)) == set(before)  # nothing added: no multirun.yaml, no .hydra/ of a job


def test_a_run_without_a_manifest_is_known_by_the_job_hydra_recorded(tmp_path):
    run = tmp_path / "compare_run"  # compare.py and curate write no manifest.json; Hydra's records name the job
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    name: compare\n")
    (run / "compare.md").write_text("| run | acc |\n")
    before = snapshot(run)
    proc = run_entry("evaluate.py", ["model=tiny", "eval=[perplexity]", f"hydra.run.dir={run}"])
    assert_user_error(proc, "hydra.run.dir:", "holds a compare run", before=before)


def test_a_bad_value_anywhere_in_a_sweep_stops_it_before_the_first_job():
    from chipadapt.sweep_preflight import job_override_sets

    sets = job_override_sets(["model=tiny", "optim.lr=1e-3,abc", "seed=1,2"])
    assert sets == [
        (None, ["model=tiny", "optim.lr=0.001", "seed=1"]),
        ("optim.lr=abc", ["model=tiny", "seed=1", "optim.lr=abc"]),
        ("seed=2", ["model=tiny", "optim.lr=0.001", "seed=2"]),
    ]


def test_a_sweep_with_a_bad_later_value_runs_no_job(train_refusals):
    """Its config group as a glob too: expanded for the checks, not refused nor left unchecked (the
    expansion itself, in-process: test_a_glob_sweep_is_expanded_for_its_checks_not_refused)."""
    assert_user_error(train_refusals["bad value"], "optim.lr: Value 'abc'", "(sweep value optim.lr=abc)")
    assert not train_refusals.sweep.exists()


def test_an_optuna_direction_or_a_slurm_launch_without_slurm_is_one_line_before_the_sweep(tmp_path, monkeypatch):
    import shutil as shell

    sweep = tmp_path / "search"
    proc = run_entry(
        "train.py",
        ["hparams_search=dapt_optuna", "model=tiny", "hydra.sweeper.direction=minimise", f"hydra.sweep.dir={sweep}"],
    )
    assert_user_error(proc, "hydra.sweeper.direction: 'minimise' is not minimize or maximize")
    if shell.which("sbatch") is None:
        proc = run_entry(
            "train.py", ["-m", "model=tiny", "hydra/launcher=slurm", "seed=1,2", f"hydra.sweep.dir={sweep}"]
        )
        assert_user_error(proc, "hydra/launcher=slurm: sbatch is not on this machine's PATH")
    assert not sweep.exists()


def test_slurm_asks_for_the_gpus_trainer_devices_names():
    from chipadapt.config_resolvers import gpus_per_node

    assert [gpus_per_node(d) for d in (4, "2", "0,1,2", [0, 1], -1, "auto")] == [4, 2, 3, 2, 8, 8]


TRAIN_ONE_STEP = [
    "model=tiny",
    "data.seq_len=64",
    "data.global_batch_size=4",
    "trainer.max_steps=1",
    "callbacks.progress=null",
]


@pytest.fixture(scope="module")
def trained_sweep(tmp_path_factory):
    """A finished sweep of one one-step training job: what both refused reruns below are refused in (one
    training process for the two)."""
    sweep = tmp_path_factory.mktemp("trained") / "sweep"
    first = run_entry("train.py", ["-m", *TRAIN_ONE_STEP, "optim.lr=1e-3", f"hydra.sweep.dir={sweep}"])
    assert first.returncode == 0, first.stderr[-2000:]
    return sweep


class Refusals(dict):
    """Each refused command line's CompletedProcess by name; the records before them; the bad sweep's folder."""

    before: dict[str, str]
    sweep: Path


@pytest.fixture(scope="module")
def train_refusals(trained_sweep, tmp_path_factory):
    """The refused train.py command lines of the tests below, one after the other in one process (each
    process spent 5-8 CPU-s importing before its line): a rerun into the finished sweep's job, the sweep
    again with another value, a sweep whose later value is bad."""
    refusals = Refusals()
    refusals.before = snapshot(*job_records(trained_sweep))
    refusals.sweep = tmp_path_factory.mktemp("bad_value") / "sweep"
    lines = {
        "rerun": [*TRAIN_ONE_STEP, "optim.lr=1e-4", f"hydra.run.dir={trained_sweep / '0'}"],
        "sweep job": ["-m", *TRAIN_ONE_STEP, "optim.lr=1e-2", f"hydra.sweep.dir={trained_sweep}"],
        "bad value": ["-m", "model=glob(tiny)", "optim.lr=1e-3,abc", f"hydra.sweep.dir={refusals.sweep}"],
    }
    refusals.update(zip(lines, refused_lines("train.py", list(lines.values())), strict=True))
    return refusals


def job_records(sweep: Path) -> list[Path]:
    return [
        sweep / "0" / ".hydra" / "overrides.yaml",
        sweep / "0" / ".hydra" / "config.yaml",
        sweep / "0" / "manifest.json",
    ]


def test_a_refused_rerun_leaves_the_finished_runs_records_as_they_were(trained_sweep, train_refusals):
    # hydra.run.dir is the finished sweep's job folder (a run's folder: the same records)
    assert_user_error(train_refusals["rerun"], "hydra.run.dir:", "holds a previous train output")
    # .hydra/ does not claim the refused lr=1e-4 trained it
    assert snapshot(*job_records(trained_sweep)) == train_refusals.before


@pytest.mark.parametrize("multirun", [False, True])
def test_a_run_folder_inside_the_model_it_reads_is_refused_before_anything_is_written(tmp_path, multirun):
    model = tiny_model_copy(tmp_path, "mymodel")
    before = snapshot(model)
    folder = (
        ["-m", f"hydra.sweep.dir={model / 'runs'}", "seed=1,2"] if multirun else [f"hydra.run.dir={model / 'run1'}"]
    )
    proc = run_entry("train.py", [*folder, "model=tiny", f"model.path={model}"])
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    assert_user_error(proc, f"{key}:", "lies inside model.path", before=before)
    assert set(snapshot(model)) == set(before) and not (model / "run1").exists() and not (model / "runs").exists()


def test_a_glob_sweep_is_expanded_for_its_checks_not_refused():
    """The jobs a glob over a config group makes, as the preflight lists them with Hydra's config loader
    (the command line, one process: test_a_sweep_with_a_bad_later_value_runs_no_job)."""
    from hydra import initialize_config_dir

    from chipadapt.sweep_preflight import job_override_sets

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        sets = job_override_sets(["model=glob(tiny)", "optim.lr=1e-3,abc"])
    assert sets == [
        (None, ["model=tiny", "optim.lr=0.001"]),
        ("optim.lr=abc", ["model=tiny", "optim.lr=abc"]),
    ]


def test_a_refused_sweep_job_leaves_the_finished_jobs_records_as_they_were(trained_sweep, train_refusals):
    assert_user_error(train_refusals["sweep job"], "hydra.sweep.dir:", "holds a previous train output")
    assert snapshot(*job_records(trained_sweep)) == train_refusals.before
