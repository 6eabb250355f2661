"""A common mistake given to merge.py, evaluate.py, export.py or chat.py is refused before the command
imports Lightning or transformers (6.4 to 7.8 CPU-s before its one line, 0.5 to 3.2 now: two runs each);
export.py and chat.py refuse theirs before torch too. Each entry runs in a fresh process under
`python -X importtime`, whose stderr lists every module the process imported."""

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


def test_merge_refuses_an_output_that_is_its_input_before_lightning_and_transformers(tmp_path):
    chip = tmp_path / "chip"  # refused by its name: nothing in it is read
    chip.mkdir()
    line, imported = refused(
        "merge.py",
        [f"models.chip={chip}", f"models.instruct={chip}", f"output={chip}", f"hydra.run.dir={tmp_path / 'run'}"],
    )
    assert line == f"chipadapt: error: output: {chip} is models.chip itself; write the output somewhere else"
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))
    assert "matplotlib" not in imported  # the sweep report's plot, built with every merge.py command


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
