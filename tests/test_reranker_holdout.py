"""The reranker holds out the groups the retriever run that built its data held out. Before, it held out its
own 5% against the retriever's 10% (and split after dropping groups without negatives, so a group without a
query id moved): it trained on queries the retriever's dev figures are measured on."""

import json
import logging

import pytest
from conftest import write_jsonl

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.reranker_datamodule import RerankerDataModule
from chipadapt.retrieval.tevatron_data import read_tevatron
from chipadapt.retrieval.training_data import split_groups


def _group(i: int, negatives: bool = True, with_id: bool = True) -> dict:
    group = {
        "query": f"Which option of step {i} sets the density?",
        "positive_passages": [{"docid": f"p{i}", "text": f"Step {i} sets the density with -density."}],
        "negative_passages": [{"docid": f"n{i}", "text": f"Step {i} writes the DEF."}] if negatives else [],
        "method": "llm",
    }
    return {**group, "query_id": f"q{i}"} if with_id else group


def _retriever_run(tmp_path, fraction: float):
    """A retriever run folder: its synthetic groups (some without negatives, some without a query id) and
    the manifest.json that says how it held them out."""
    run = tmp_path / "retriever_run"
    (run / "synthetic").mkdir(parents=True)
    groups = [_group(i, negatives=i % 7 != 3, with_id=i % 5 != 0) for i in range(300)]
    train_file = write_jsonl(run / "synthetic" / "train.jsonl", groups)
    config = {
        "stage": {"name": "retriever"},
        "retriever": {"train_file": None, "eval_queries": None, "heldout_fraction": fraction},
    }
    (run / "manifest.json").write_text(json.dumps({"kind": "train", "config": config}))
    return train_file


def _queries(groups) -> set[str]:
    return {g["query"] for g in groups}


def test_the_reranker_holds_out_the_retriever_runs_groups(tmp_path):
    train_file = _retriever_run(tmp_path, 0.1)
    # As stages/retriever.py splits them.
    retriever_train, retriever_val = split_groups(read_tevatron(train_file), 0.1)
    data = RerankerDataModule(str(train_file), None, None, None, n_passages=2, batch_size=2, seed=0)
    val = data.val_sets["synthetic_heldout"].groups
    with_negatives = {g["query"] for g in retriever_val if g["negative_passages"]}
    assert _queries(val) == with_negatives and len(val) >= 10
    assert not _queries(data.train_set.groups) & _queries(retriever_val)  # nothing the retriever held out
    assert _queries(data.train_set.groups) == {g["query"] for g in retriever_train if g["negative_passages"]}
    assert data.stats["heldout_fraction"] == {str(train_file): 0.1}


def test_another_fraction_is_kept_and_told_and_null_needs_a_retriever_run(tmp_path, caplog):
    train_file = _retriever_run(tmp_path, 0.1)
    _, retriever_val = split_groups(read_tevatron(train_file), 0.1)
    with caplog.at_level(logging.WARNING):
        data = RerankerDataModule(str(train_file), 0.05, None, None, n_passages=2, batch_size=2, seed=0)
    assert _queries(data.train_set.groups) & _queries(retriever_val)  # as asked, but said
    assert "the reranker trains on groups that run held out" in caplog.text
    assert data.stats["heldout_fraction"] == {str(train_file): 0.05}

    own = write_jsonl(tmp_path / "own.jsonl", [_group(i) for i in range(20)])  # no retriever run beside it
    with pytest.raises(ChipadaptError, match=r"^reranker\.heldout_fraction: null holds out the groups"):
        RerankerDataModule(str(own), None, None, None, n_passages=2, batch_size=2, seed=0)
    assert RerankerDataModule(str(own), 0.2, None, None, n_passages=2, batch_size=2, seed=0).stats["val_groups"] > 0


def test_null_without_a_built_run_says_which_case_and_to_set_the_fraction(tmp_path):
    # Not a retriever run's file at all: no manifest.json of stage=retriever beside its folder.
    (tmp_path / "mine" / "groups").mkdir(parents=True)
    own = write_jsonl(tmp_path / "mine" / "groups" / "train.jsonl", [_group(i) for i in range(20)])
    with pytest.raises(ChipadaptError) as not_a_run:
        RerankerDataModule(str(own), None, None, None, n_passages=2, batch_size=2, seed=0)
    assert "is not a retriever run's synthetic data" in str(not_a_run.value)
    assert "set reranker.heldout_fraction" in str(not_a_run.value)
    # A retriever run that read a given train_file: its manifest is there, but it built no synthetic data.
    train_file = _retriever_run(tmp_path, 0.1)
    manifest = train_file.parent.parent / "manifest.json"
    record = json.loads(manifest.read_text())
    record["config"]["retriever"]["train_file"] = str(own)
    manifest.write_text(json.dumps(record))
    with pytest.raises(ChipadaptError, match=r"^reranker\.heldout_fraction: null holds out the groups") as given:
        RerankerDataModule(str(train_file), None, None, None, n_passages=2, batch_size=2, seed=0)
    message = str(given.value)
    assert f"read retriever.train_file={own}" in message and "not a retriever run's" not in message
    assert (
        f"set reranker.heldout_fraction (to hold out the groups that run held out, reranker.train_file={own} with "
        "reranker.heldout_fraction=0.1" in message
    )
