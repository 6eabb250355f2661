"""A common mistake given to merge.py, evaluate.py, export.py or chat.py is refused before the command
imports Lightning or transformers (6.4 to 7.8 CPU-s before its one line, 0.5 to 3.2 now: two runs each);
export.py, chat.py and merge.py's refusals of its output refuse theirs before torch too. Each entry runs in a
fresh process under `python -X importtime`, whose stderr lists every module the process imported."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("lightning", "transformers")


def refused(script: str, args: list[str]) -> tuple[str, set[str]]:
    """(its one error line, the top-level packages it imported) of an entry point's refused run."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    imported = {
        m.group(1).split(".")[0] for m in re.finditer(r"^import time:[^|]*\|[^|]*\|\s*(\S+)$", proc.stderr, re.M)
    }
    told = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(told) == 1 and told[0].startswith("chipadapt: error: "), "\n".join(told)[-3000:]
    return told[0], imported


def test_merge_refuses_an_output_that_is_its_input_before_torch(tmp_path):
    chip = tmp_path / "chip"  # refused by its name: nothing in it is read
    chip.mkdir()
    line, imported = refused(
        "merge.py",
        [f"models.chip={chip}", f"models.instruct={chip}", f"output={chip}", f"hydra.run.dir={tmp_path / 'run'}"],
    )
    assert line == f"chipadapt: error: output: {chip} is models.chip itself; write the output somewhere else"
    assert imported.isdisjoint({*HEAVY, "torch"}), sorted(imported & {*HEAVY, "torch"})
    assert "matplotlib" not in imported  # the sweep report's plot, built with every merge.py command


def test_merge_refuses_a_users_folder_with_a_base_given_before_torch(tmp_path):
    """A base is an input of task_arithmetic, not of chipalign: a refusal the same either way needs no method."""
    chip, instruct, base, mine = (tmp_path / name for name in ("chip", "instruct", "base", "mine"))
    for folder in (chip, instruct, base, mine):
        folder.mkdir()
    (mine / "thesis.tex").write_text("months of work\n")
    args = [f"models.{key}={folder}" for key, folder in (("chip", chip), ("instruct", instruct), ("base", base))]
    line, imported = refused("merge.py", [*args, f"output={mine}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert line.startswith(f"chipadapt: error: output: {mine} exists and is not an output of merge"), line
    assert imported.isdisjoint({*HEAVY, "torch"}), sorted(imported & {*HEAVY, "torch"})
    assert (mine / "thesis.tex").read_text() == "months of work\n"


def merge_job(tmp_path, *overrides: str):
    from helpers.entry_jobs import entry_job

    return entry_job("merge", list(overrides), tmp_path / "run")


@pytest.mark.parametrize(
    ("method", "said"), [("chipalign", "exists and is not an output of merge"), ("task_arithmetic", "is models.base")]
)
def test_an_output_that_is_the_base_is_refused_as_the_method_reads_it(tmp_path, method, said):
    """models.base as the output is an input only of a method that reads one: the check before torch cannot
    tell which without building the method, so it leaves this to the job, which names it as the method reads it."""
    from chipadapt.errors import ChipadaptError
    from chipadapt.merge.run import run

    for name in ("chip", "instruct", "base"):
        (tmp_path / name).mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")  # a folder holding something: not merge.py's
    models = [f"models.{name}={tmp_path / name}" for name in ("chip", "instruct", "base")]
    with merge_job(tmp_path, f"merge={method}", *models, f"output={tmp_path / 'base'}") as cfg:
        with pytest.raises(ChipadaptError, match=f"^output: {tmp_path / 'base'} {said}"):
            run(cfg)


def test_evaluate_refuses_a_missing_model_before_lightning_and_transformers(tmp_path):
    missing = tmp_path / "nope"
    line, imported = refused(
        "evaluate.py", [f"model.path={missing}", "eval=[perplexity]", f"hydra.run.dir={tmp_path / 'run'}"]
    )
    assert line == f"chipadapt: error: model.path: {missing} does not exist"
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))
    assert not (tmp_path / "run" / "manifest.json").exists()  # refused before the run recorded itself


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("export.py", ["checkpoint={tmp}/nope.ckpt"], "checkpoint: {tmp}/nope.ckpt does not exist"),
        ("chat.py", ["model.path={tmp}/nope"], "model.path: {tmp}/nope does not exist"),
    ],
)
def test_export_and_chat_refuse_a_missing_input_before_torch(tmp_path, script, args, message):
    line, imported = refused(script, [arg.format(tmp=tmp_path) for arg in args] + [f"hydra.run.dir={tmp_path / 'run'}"])
    assert line == "chipadapt: error: " + message.format(tmp=tmp_path)
    assert imported.isdisjoint({*HEAVY, "torch"}), sorted(imported & {*HEAVY, "torch"})


def test_evaluate_refuses_a_pickle_only_model_before_lightning_and_transformers(tmp_path):
    pickled = tmp_path / "pickled"  # refused by its files' names: the pickle is never opened
    pickled.mkdir()
    (pickled / "config.json").write_text('{"model_type": "llama"}')
    (pickled / "pytorch_model.bin").write_bytes(b"not even a pickle")
    line, imported = refused(
        "evaluate.py", [f"model.path={pickled}", "eval=[perplexity]", f"hydra.run.dir={tmp_path / 'run'}"]
    )
    assert line == (
        f"chipadapt: error: model.path: {pickled} holds only pickled weights (pytorch_model.bin); they are never "
        "loaded (a pickle can run code): save the model with safetensors"
    )
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))
    assert not (tmp_path / "run" / "manifest.json").exists()  # refused before the run recorded itself


def evaluate_job(tmp_path, *overrides: str):
    """evaluate.py's job config with a model.path that names nothing (a context: Hydra's job config set)."""
    from helpers.entry_jobs import entry_job

    return entry_job("evaluate", [f"model.path={tmp_path / 'nope'}", *overrides], tmp_path / "run")


def test_a_missing_model_is_no_refusal_for_tasks_that_read_no_model(tmp_path):
    from chipadapt.eval.run import refuse_a_missing_model

    with evaluate_job(tmp_path, "eval=[retrieval]") as cfg:  # BM25 and encoders: no language model
        refuse_a_missing_model(cfg)


@pytest.mark.parametrize(
    ("override", "named"),
    [("eval.mcq.style=bogus", "eval.mcq.style"), ("logger.wandb.offline=maybe", "logger.wandb.offline")],
)
def test_a_mistake_the_job_said_before_the_missing_model_is_still_said_first(tmp_path, override, named):
    from chipadapt.errors import ChipadaptError
    from chipadapt.eval.run import run

    extra = ["logger=wandb"] if override.startswith("logger.") else []
    with evaluate_job(tmp_path, "eval=[mcq]", *extra, override) as cfg:
        with pytest.raises(Exception) as raised:
            run(cfg)
    # A task's own refusal comes wrapped by Hydra's instantiate; the user's line is its cause's.
    error = raised.value if isinstance(raised.value, ChipadaptError) else raised.value.__cause__
    assert isinstance(error, ChipadaptError) and str(error).startswith(f"{named}: "), repr(raised.value)
