"""The retriever, reranker and attribute-model stages show no language-model loss that would go NaN:
before, their diverged weights were published as `model/` and the run recorded `completed` (a search
over their learning rate scored the NaN model as any other trial). Now they fail as DAPT and SFT do."""

import pytest
import torch
from conftest import TINY_FAST, compose, read_manifest, write_jsonl
from helpers.models import tiny_bert

from chipadapt.errors import TrainingDiverged

SPOIL = ["+callbacks.spoil._target_=helpers.spoil.SpoilWeights", "callbacks.progress=null"]


def assert_failed_unpublished(run):
    manifest = read_manifest(run)
    assert manifest["status"] == "failed"
    assert "weight tensors are not finite" in manifest["error"]
    assert not (run / "model").exists() and not [p for p in run.iterdir() if p.name.startswith(".model")]
    assert (run / "checkpoints" / "last.ckpt").is_file()  # kept for inspection


def test_a_diverged_reranker_is_not_published(tmp_path):
    from chipadapt.pipeline import train

    topics = ["global routing and congestion", "clock tree skew buffers", "power grid straps", "detailed placement"]
    groups = [
        {
            "query_id": f"q{i}",
            "query": f"question {i} about {topics[i % 4]}",
            "positive_passages": [{"docid": f"p{i % 4}", "text": topics[i % 4]}],
            "negative_passages": [{"docid": f"p{j}", "text": topics[j]} for j in range(4) if j != i % 4],
        }
        for i in range(8)
    ]
    run = tmp_path / "run"
    overrides = [
        "stage=reranker",
        f"reranker.encoder.path={tiny_bert(tmp_path / 'encoder')}",
        f"reranker.train_file={write_jsonl(tmp_path / 'train.jsonl', groups)}",
        "reranker.heldout_fraction=0.0",
        "reranker.max_tokens=32",
        "reranker.train.batch_size=4",
        "reranker.train.n_passages=2",
        "trainer.max_steps=2",
        *SPOIL,
    ]
    with pytest.raises(TrainingDiverged, match=r"weight tensors are not finite at step 2"):
        train(compose(overrides, run))
    assert_failed_unpublished(run)


def test_a_diverged_attribute_model_is_not_published(tmp_path):
    from chipadapt.pipeline import train

    labelled = [
        {
            "id": f"c{i}",
            "messages": [
                {"role": "user", "content": f"Question {i} about timing?"},
                {"role": "assistant", "content": "Add delay cells." if i % 2 else "no idea"},
            ],
            "steerlm_attributes": {"quality": 4 * (i % 2)},
        }
        for i in range(10)
    ]
    run = tmp_path / "run"
    overrides = [
        "stage=attribute_model",
        *TINY_FAST,
        f"data.sources.oasst_labelled.path={write_jsonl(tmp_path / 'labelled.jsonl', labelled)}",
        "data.sources.oasst_labelled.group_by=null",  # its rows carry no message_tree_id
        "data.attributes.names=[quality]",
        "data.val_fraction=0.2",
        "data.micro_batch_size=4",
        "trainer.max_steps=2",
        "loss_guard.enabled=false",
        *SPOIL,
    ]
    with pytest.raises(TrainingDiverged, match=r"weight tensors are not finite at step 2"):
        train(compose(overrides, run))
    assert_failed_unpublished(run)


def test_finite_weights_are_published_on_rank_zero_and_diverged_ones_stop_every_rank(tmp_path):
    from omegaconf import OmegaConf

    from chipadapt.stages.common import publish_if_finite

    cfg = OmegaConf.create({"optim": {"lr": 1e-3}})
    layer = torch.nn.Linear(2, 2)
    published = []

    class Rank:
        def __init__(self, zero):
            self.is_global_zero, self.global_step = zero, 3

    publish_if_finite(cfg, tmp_path, Rank(False), layer, lambda: published.append("rank 1"))
    publish_if_finite(cfg, tmp_path, Rank(True), layer, lambda: published.append("rank 0"))
    assert published == ["rank 0"]
    with torch.no_grad():
        layer.bias[1] = float("inf")
    for zero in (True, False):  # rank 1 stops too, rather than going on to a model that is not there
        with pytest.raises(TrainingDiverged, match=r"1 of 2 weight tensors are not finite at step 3 \(first: bias\)"):
            publish_if_finite(cfg, tmp_path, Rank(zero), layer, lambda: published.append("again"))
    assert published == ["rank 0"]
