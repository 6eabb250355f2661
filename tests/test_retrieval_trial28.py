"""The 2026-12-07 retrieval trial's findings: outputs written into the docs folder the passages are built
from, gold ids that an edited document moved, training on almost nothing, timings and intervals the
retriever stage left out, and messages that cut off where the fault is."""

import logging
import math

import pytest
from conftest import write_jsonl
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passages import Passage
from chipadapt.retrieval.queries import read_queries, select_split


def folder_task(tmp_path, **changes):
    from chipadapt.eval.tasks.retrieval import RetrievalTask

    settings = dict(
        passages=None,
        build=OmegaConf.create({"sources": {"docs": {"path": str(tmp_path / "docs")}}}),
        queries=str(tmp_path / "q.jsonl"),
        split="all",
        encoders=OmegaConf.create({}),
        dense=OmegaConf.create({}),
        bm25=OmegaConf.create({}),
        hybrid=None,
        fusion=None,
        ks=[1],
        mrr_k=10,
        limit=None,
        index_dir=None,
        misses_file=None,
        misses_k=1,
    )
    return RetrievalTask(**{**settings, **changes})


def test_a_misses_file_inside_the_docs_folder_is_refused(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("placement density\n")
    # Written there, the next run indexed it and its questions retrieved it first.
    with pytest.raises(ChipadaptError, match=r"misses_file: .*misses.md lies inside eval.retrieval.build.sources.docs"):
        folder_task(tmp_path, misses_file=str(tmp_path / "docs" / "misses.md"))
    folder_task(tmp_path, misses_file=str(tmp_path / "misses.md"))  # beside it: fine


def test_gold_passages_without_the_evidence_are_named_with_their_line(tmp_path, caplog):
    from chipadapt.retrieval.queries import gold_without_evidence

    write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "ok", "query": "density?", "positive_ids": ["d#0"], "evidence": "Placement  DENSITY"},
            {"id": "moved", "query": "skew?", "positive_ids": ["d#0"], "evidence": "42 picoseconds"},
            {"id": "plain", "query": "no evidence", "positive_ids": ["d#1"]},
        ],
    )
    passages = [Passage("d#0", "placement\ndensity 0.7", "d"), Passage("d#1", "skew of 42 picoseconds", "d")]
    with caplog.at_level(logging.WARNING):
        stale = gold_without_evidence(read_queries(tmp_path / "q.jsonl"), passages, "q.jsonl")
    assert stale == ["moved"]
    assert "q.jsonl:2: question 'moved'" in caplog.text and "passages holding it now: d#1" in caplog.text


def test_a_split_that_is_neither_dev_nor_test_names_its_line(tmp_path):
    write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "query": "x", "positive_ids": ["p"], "split": "dev"},
            {"id": "b", "query": "y", "positive_ids": ["p"], "split": "tset"},
        ],
    )
    with pytest.raises(ChipadaptError, match=r"q.jsonl:2: query 'b' has split 'tset', not dev or test"):
        select_split(read_queries(tmp_path / "q.jsonl"), "test", str(tmp_path / "q.jsonl"))


def test_a_malformed_line_says_its_column(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"id": "a", "query": "tab\there", "positive_ids": ["p"]}\n')
    with pytest.raises(ChipadaptError, match=r"q.jsonl:1: malformed JSON \(Invalid control character at column 26\)"):
        read_queries(tmp_path / "q.jsonl")


def test_few_synthetic_queries_made_is_warned_for_ict_too(caplog):
    from chipadapt.retrieval.synthetic import synthesize

    class Miner:
        def search(self, texts, depth):
            return [[] for _ in texts]

    long_one = "The placer spreads cells until the density target of seven tenths is reached everywhere."
    passages = [Passage("a#0", long_one, "a")] + [Passage(f"b#{i}", "x" * 200, "b") for i in range(9)]
    with caplog.at_level(logging.WARNING):
        groups, report = synthesize(passages, 10, "ict", Miner(), None, 4, 0, 0.0, 2, 0.9, 50, 0)
    assert len(groups) == 1 and report["dropped"] == 9
    assert "only 1 training queries made of 10 requested" in caplog.text


def test_the_retriever_stage_times_its_searches_and_says_when_a_figure_has_no_interval():
    from chipadapt.report import console
    from chipadapt.retrieval.compare_encoders import QuerySet, compare_encoders, comparison_tables
    from chipadapt.retrieval.queries import Query

    rcfg = OmegaConf.create(
        {
            "encoder": {"path": None, "package": None},
            "eval_batch_size": 2,
            "eval_ks": [1],
            "bm25": {"k1": 1.5, "b": 0.75, "stemmer": "english", "stopwords": "en", "context": False},
        }
    )
    passages = [Passage("p1", "placement density target", "d"), Passage("p2", "clock skew target", "d")]
    # One query whose gold passage comes second: MRR 0.5 over n=1, which a bootstrap gives no interval.
    sets = {"held": QuerySet([Query("q", "clock target", ("p1",))], {})}
    results = compare_encoders(rcfg, passages, sets, {}).results
    assert isinstance(results["held"]["bm25"]["ms_per_query"], float)
    ci = results["held"]["bm25"]["mrr@10_ci"]
    assert ci is None or all(math.isinf(end) for end in ci)  # no interval: none, or unbounded at both ends
    with console.capture() as shown:
        for table in comparison_tables(results):
            console.print(table)
    assert "0.500 (interval n/a: n=1, too few)" in shown.get()


def test_evaluate_tables_say_why_a_figure_over_one_item_has_no_interval(tmp_path):
    from chipadapt.eval.run import write_results
    from chipadapt.report import console

    figures = {"mrr@10": 0.5, "mrr@10_ci": None, "mrr@10_n": 1, "queries": 1}
    with console.capture() as shown:
        write_results({"retrieval": {"bm25": {"by_type": {"error": figures}}}}, tmp_path, "results")
    assert "(interval n/a: n=1, too few)" in shown.get()


def test_settings_chosen_on_few_dev_questions_are_warned_about(caplog):
    from chipadapt.eval.tasks.retrieval import warn_if_few_tuning_questions

    with caplog.at_level(logging.WARNING):
        warn_if_few_tuning_questions("hybrid fusion", 22, 3, "dev")
        warn_if_few_tuning_questions("hybrid fusion", 22, 71, "dev")
    assert caplog.text.count("chosen among") == 1 and "only 3 dev question(s)" in caplog.text
