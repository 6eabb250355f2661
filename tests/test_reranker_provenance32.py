"""A list of files that retriever runs built, read by the reranker with heldout_fraction=null. Before, each file
kept the share of the run that built it, silently, also where those runs held out different shares: a hold-out
no retriever run that read the list had (one share of every file), so the reranker trained on groups the dev
split of such a run scored. Now such a list is refused, naming the files, their shares and the setting."""

import json
import logging

import pytest
import torch
from conftest import write_jsonl
from omegaconf import OmegaConf

import chipadapt.stages.reranker as reranker_stage
from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.reranker_datamodule import RerankerDataModule
from chipadapt.retrieval.tevatron_data import read_tevatron
from chipadapt.retrieval.training_data import split_groups


def _group(tag: str, i: int) -> dict:
    return {
        "query_id": f"{tag}{i}",  # synthesis gives every group an id
        "query": f"Which option of {tag} step {i} sets the density?",
        "positive_passages": [{"docid": f"{tag}p{i}", "text": f"Step {i} of {tag} sets the density."}],
        "negative_passages": [{"docid": f"{tag}n{i}", "text": f"Step {i} of {tag} writes the DEF."}],
        "method": "llm",
    }


def _built(folder, tag: str, fraction: float):
    """RUN/synthetic/train.jsonl beside the manifest.json of the retriever run that built it."""
    (folder / "synthetic").mkdir(parents=True)
    built = write_jsonl(folder / "synthetic" / "train.jsonl", [_group(tag, i) for i in range(200)])
    config = {
        "stage": {"name": "retriever"},
        "retriever": {"train_file": None, "eval_queries": None, "heldout_fraction": fraction},
    }
    (folder / "manifest.json").write_text(json.dumps({"kind": "train", "config": config}))
    return str(built)


def _queries(groups) -> set[str]:
    return {g["query"] for g in groups}


def _read(files, fraction, **kwargs) -> RerankerDataModule:
    return RerankerDataModule(files, fraction, None, None, n_passages=2, batch_size=2, seed=0, **kwargs)


def test_a_list_of_files_whose_runs_held_out_other_shares_is_refused_and_set_holds_out_the_list_readers(tmp_path):
    files = [_built(tmp_path / "run_a", "a", 0.1), _built(tmp_path / "run_c", "c", 0.3)]
    # Retriever run B read retriever.train_file=[a, c] with 0.3: one share over the list.
    _, b_val = split_groups([g for f in files for g in read_tevatron(f)], 0.3)
    with pytest.raises(ChipadaptError) as told:
        _read(files, None)
    message = str(told.value)
    assert message.startswith("reranker.heldout_fraction: null holds out the share")
    assert "\n" not in message
    assert f"{files[0]}: 0.1" in message and f"{files[1]}: 0.3" in message
    assert f"reranker.train_file=[{','.join(files)}]" in message
    assert "set reranker.heldout_fraction" in message and "(0.3, the largest" in message

    # Set to B's share, the reranker holds out B's groups, and trains on none that A, C or B held out.
    data = _read(files, 0.3)
    assert _queries(data.val_sets["synthetic_heldout"].groups) == _queries(b_val)
    a_val = split_groups(read_tevatron(files[0]), 0.1)[1]
    assert not _queries(data.train_set.groups) & (_queries(b_val) | _queries(a_val))


def test_a_list_of_files_whose_runs_held_out_one_share_keeps_it(tmp_path):
    files = [_built(tmp_path / "run_a", "a", 0.2), _built(tmp_path / "run_c", "c", 0.2)]
    b_train, b_val = split_groups([g for f in files for g in read_tevatron(f)], 0.2)
    data = _read(files, None)
    assert _queries(data.val_sets["synthetic_heldout"].groups) == _queries(b_val)
    assert _queries(data.train_set.groups) == _queries(b_train)
    # The same file twice is one run's share, whatever the list.
    assert _read([files[0], files[0]], None).stats["heldout_fraction"] == {files[0]: 0.2}


def test_a_set_share_over_a_list_warns_about_the_builder_without_offering_null(tmp_path, caplog):
    built = _built(tmp_path / "run_a", "a", 0.3)
    given = str(write_jsonl(tmp_path / "y.jsonl", [_group("y", i) for i in range(50)]))
    with caplog.at_level(logging.WARNING):
        _read([built, given], 0.1)
    assert "the reranker trains on groups that run held out" in caplog.text
    # null would refuse the list (y.jsonl has no run's share): the advice names the run the figures compare with.
    assert "null holds out the same groups" not in caplog.text
    assert "the retriever run the reranker's figures are compared with" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _read(built, 0.1)  # one file: null is its run's share
    assert "reranker.heldout_fraction=null holds out the same groups as that run" in caplog.text


def test_a_set_share_over_a_list_of_one_share_offers_null_and_one_file_twice_is_one_file(tmp_path, caplog, monkeypatch):
    files = [_built(tmp_path / "run_a", "a", 0.2), _built(tmp_path / "run_c", "c", 0.2)]
    with caplog.at_level(logging.WARNING):
        _read(files, 0.1)
    # Every file's run held out 0.2: null holds out their groups, said once all shares are known.
    assert "reranker.heldout_fraction=null holds out the same groups as that run" in caplog.text
    assert "every file's run held out 0.2" in caplog.text
    assert "figures are compared with" not in caplog.text
    # Another share in the list: null would refuse it.
    caplog.clear()
    files.append(_built(tmp_path / "run_d", "d", 0.3))
    with caplog.at_level(logging.WARNING):
        _read(files, 0.1)
    assert "null holds out the same groups" not in caplog.text and "figures are compared with" in caplog.text
    # The same file under two names is one file: its run's share, told once.
    caplog.clear()
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        _read(["run_a/synthetic/train.jsonl", "./run_a/synthetic/train.jsonl"], 0.1)
    assert caplog.text.count("reranker.heldout_fraction=0.1 is not") == 1
    assert "null holds out the same groups as that run" in caplog.text and "other files" not in caplog.text


def test_a_run_that_kept_each_files_share_before_the_refusal_resumes_on_them_and_a_fresh_one_is_refused(
    tmp_path, monkeypatch, caplog
):
    files = [_built(tmp_path / "run_a", "a", 0.1), _built(tmp_path / "run_c", "c", 0.3)]
    datamodule = {
        "_target_": "chipadapt.retrieval.reranker_datamodule.RerankerDataModule",
        "_partial_": True,
        **{"train_file": files, "heldout_fraction": None, "styles": None, "eval_queries": None},
        **{"n_passages": 2, "batch_size": 2, "seed": 0},
    }
    cfg = OmegaConf.create({"stage": {"datamodule": datamodule}})
    # A checkpoint of a run started before such a list was refused, which held out each file's run's share; a
    # share set on resume is refused by the settings check (another setting than the checkpoint's).
    ckpt = tmp_path / "out" / "last.ckpt"
    ckpt.parent.mkdir()
    torch.save({"global_step": 2, "RerankerDataModule": {"heldout_numbering": "sequence"}}, ckpt)
    resumed = {"path": str(ckpt)}
    monkeypatch.setattr(reranker_stage, "resume_checkpoint", lambda cfg, out, check: resumed["path"])
    with caplog.at_level(logging.WARNING):
        data = reranker_stage.resumed_datamodule(cfg, ckpt.parent, scorer=None)
    assert data.stats["heldout_fraction"] == {files[0]: 0.1, files[1]: 0.3}
    own_val = [g for f, share in zip(files, (0.1, 0.3), strict=True) for g in split_groups(read_tevatron(f), share)[1]]
    assert _queries(data.val_sets["synthetic_heldout"].groups) == _queries(own_val)
    assert not _queries(data.train_set.groups) & _queries(own_val)
    assert f"resuming {ckpt}, whose run kept with reranker.heldout_fraction=null" in caplog.text
    assert f"{files[0]}: 0.1, {files[1]}: 0.3" in caplog.text and "a start over (resume=false)" in caplog.text
    # A fresh run in the folder is refused as before.
    resumed["path"] = None
    with pytest.raises(ChipadaptError, match=r"^reranker\.heldout_fraction: null holds out the share"):
        reranker_stage.resumed_datamodule(cfg, ckpt.parent, scorer=None)
