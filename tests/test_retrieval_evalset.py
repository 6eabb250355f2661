"""The frozen OpenROAD/ORFS retrieval questions and what eval=retrieval does with them: a stable
dev/test split, split selection, passage context, fusion chosen on dev with a fallback, BM25 doc
expansion, per-type figures and the misses file."""

import collections
import hashlib
import json

import pytest
from conftest import ROOT, write_jsonl

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passages import Passage, build_passages, chunk_text
from chipadapt.retrieval.queries import Query, read_queries, select_split

QUESTIONS = ROOT / "src/chipadapt/resources/retrieval/openroad_questions.jsonl"
TYPES = {"how-to", "parameter", "concept", "error", "script"}
# sha256 of the sorted test ids joined by ","; changing it means the reported split moved.
TEST_IDS_SHA256 = "bc8775c7b896f1a007dfb19cd5bdffc4d9e742d654f5b8d0a41468f72613ed44"


def test_the_question_set_and_its_split_stay_frozen():
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines()]
    assert len(rows) == 179 and len({r["id"] for r in rows}) == 179
    assert len({r["query"].lower() for r in rows}) == 179
    assert all(r["type"] in TYPES and r["answer"] and r["positive_ids"] for r in rows)
    assert {t for t in collections.Counter(r["type"] for r in rows)} == TYPES
    test_ids = sorted(r["id"] for r in rows if r["split"] == "test")
    dev_ids = [r["id"] for r in rows if r["split"] == "dev"]
    assert (len(dev_ids), len(test_ids)) == (71, 108)
    assert hashlib.sha256(",".join(test_ids).encode()).hexdigest() == TEST_IDS_SHA256
    # The rule that made the split: per type, the 40% of ids with the smallest hash are dev.
    for kind in TYPES:
        of_kind = [r for r in rows if r["type"] == kind]
        ranked = sorted(of_kind, key=lambda r: hashlib.sha256(f"chipadapt-retrieval-split:{r['id']}".encode()).digest())
        n_dev = round(0.4 * len(of_kind))
        assert [r["split"] for r in ranked] == ["dev"] * n_dev + ["test"] * (len(of_kind) - n_dev)


def test_select_split_takes_one_split_or_all_and_refuses_unmarked_files(tmp_path):
    queries = read_queries(QUESTIONS)
    dev, test = select_split(queries, "dev"), select_split(queries, "test")
    assert len(dev) + len(test) == len(queries) == len(select_split(queries, "all"))
    assert not {q.id for q in dev} & {q.id for q in test}
    plain = [Query("a", "q", ("p",)), Query("b", "q", ("p",))]
    assert select_split(plain, "all") == plain
    with pytest.raises(ChipadaptError, match="no query has a 'split' field"):
        select_split(plain, "dev")
    with pytest.raises(ChipadaptError, match="'b' has no 'split'"):
        select_split([Query("a", "q", ("p",), extra={"split": "dev"}), plain[1]], "dev")
    with pytest.raises(ChipadaptError, match="not one of dev, test, all"):
        select_split(queries, "train")


DOC = """# Global Routing

Intro text about the router.

## Commands

### Set Routing Layers

Use set_routing_layers to limit the layers.

""" + "\n\n".join(f"Paragraph {i} says more about layer ranges and clocks." for i in range(8))


def test_passages_know_their_title_and_section_and_ids_do_not_depend_on_it(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"path": "src/grt/README.md", "text": DOC}])
    passages = build_passages({"docs": {"path": str(corpus)}}, 160, 20, 0)
    assert [p.text for p in passages] == chunk_text(DOC, 160, 20, 0)
    assert passages[0].context == "Global Routing"
    assert passages[-1].context == "Global Routing > Commands > Set Routing Layers"
    with_context = passages[-1].with_context()
    assert with_context.id == passages[-1].id
    assert with_context.text == f"{passages[-1].context}\n{passages[-1].text}"
    assert with_context.with_context() == with_context  # prepended once
    untitled = write_jsonl(tmp_path / "u.jsonl", [{"path": "notes.md", "text": "no headings here at all"}])
    assert build_passages({"docs": {"path": str(untitled)}}, 160, 20, 0)[0].context == "notes.md"


def test_bm25_doc_expansion_adds_the_queries_written_for_a_passage(tmp_path):
    from chipadapt.retrieval.retrievers import BM25Retriever

    passages = [
        Passage("grt", "The global router assigns nets to routing regions.", "d"),
        Passage("cts", "Clock tree synthesis inserts buffers.", "d"),
    ]
    plain = BM25Retriever(1.5, 0.75, "english", "en", False)
    plain.index(passages)
    assert not plain.search(["fix congestion overflow"], 2)[0]
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [{"query": "how do I fix congestion overflow", "positive_passages": [{"docid": "grt", "text": "..."}]}],
    )
    expanded = BM25Retriever(1.5, 0.75, "english", "en", False, expansion=str(train))
    expanded.index(passages)
    assert expanded.search(["fix congestion overflow"], 2)[0][0][0] == "grt"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "q"}])
    with pytest.raises(ChipadaptError, match="bad.jsonl:1"):
        BM25Retriever(1.5, 0.75, None, None, False, expansion=str(bad))


def test_bm25_context_indexes_title_and_section_but_leaves_the_text_alone():
    from chipadapt.retrieval.retrievers import BM25Retriever

    # The question names the document's subject; only the passage's heading line says it.
    passages = [
        Passage("psm#1", "analyze_power_grid -net net_name [-corner corner]", "d", "IR Drop Analysis > Commands"),
        Passage("grt#1", "set_global_routing_layer_adjustment Metal4 0.5", "d", "Global Routing > Commands"),
    ]
    plain = BM25Retriever(1.5, 0.75, "english", "en", False)
    plain.index(passages)
    assert not plain.search(["IR drop analysis"], 2)[0]
    with_context = BM25Retriever(1.5, 0.75, "english", "en", True)
    with_context.index(passages)
    assert [pid for pid, _ in with_context.search(["IR drop analysis"], 2)[0]] == ["psm#1"]
    assert passages[0].text.startswith("analyze_power_grid")  # what RAG prompts show is unchanged
    assert passages[0].indexed_text(True) == f"IR Drop Analysis > Commands\n{passages[0].text}"
    # A passage whose text already starts with its context (passages.context=true) gets it once.
    assert passages[0].with_context().indexed_text(True) == passages[0].indexed_text(True)


def test_fusion_is_chosen_on_the_grid_and_falls_back_to_the_better_part():
    from chipadapt.retrieval.fusion_choice import choose_fusion

    grid = {"minmax": {"weight": [0.3, 0.7]}, "rrf": {"weight": [0.5], "rrf_k": [10, 60]}}
    positives = [("a",), ("b",)]
    # Sparse finds both at rank 1, dense at rank 2: fusing cannot beat sparse alone -> fall back to it.
    sparse = [[("a", 9.0), ("x", 1.0)], [("b", 9.0), ("y", 1.0)]]
    dense = [[("x", 0.9), ("a", 0.8)], [("y", 0.9), ("b", 0.8)]]
    choice = choose_fusion(sparse, dense, positives, grid, "mrr@10", [1, 5], 10)
    assert choice["use"] == "sparse" and choice["sparse_mrr@10"] == 1.0 and len(choice["grid"]) == 4
    # The fused setting that lost is not named where the setting in use is: a reader took it as in use.
    assert not {"fusion", "weight", "rrf_k", "fused_mrr@10"} & choice.keys()
    rejected = choice["rejected_fusion"]
    assert rejected["fused_mrr@10"] == max(choice["grid"].values()) <= choice["sparse_mrr@10"]
    assert {"fusion", "weight", "rrf_k"} <= rejected.keys()
    # Each part finds one question at rank 1 and the other at rank 2: fusion puts both first.
    sparse = [[("a", 9.0), ("x", 8.0)], [("y", 9.0), ("b", 5.0)]]
    dense = [[("x", 0.9), ("a", 0.8)], [("b", 0.9), ("y", 0.2)]]
    choice = choose_fusion(sparse, dense, positives, grid, "mrr@10", [1, 5], 10)
    assert choice["use"] == "fused" and choice["fused_mrr@10"] == 1.0 > choice["sparse_mrr@10"]
    assert "rejected_fusion" not in choice and {"fusion", "weight", "rrf_k"} <= choice.keys()
    with pytest.raises(ChipadaptError, match="fusion.metric"):
        choose_fusion(sparse, dense, positives, grid, "ndcg", [1, 5], 10)
    with pytest.raises(ChipadaptError, match="fusion.grid: 'sum'"):
        choose_fusion(sparse, dense, positives, {"sum": {"weight": [0.5]}}, "mrr@10", [1, 5], 10)


def test_retrieval_task_reports_a_split_by_type_with_the_fusion_choice_and_misses(tmp_path, caplog):
    from omegaconf import OmegaConf

    from chipadapt.eval.tasks.retrieval import RetrievalTask
    from chipadapt.retrieval.retrievers import HybridRetriever

    texts = {
        "p0": "The global router assigns nets to routing regions and reports congestion overflow.",
        "p1": "Clock tree synthesis inserts buffers so that the clock reaches every flip-flop with low skew.",
        "p2": "The power grid is built by pdngen from straps and rings on the top metal layers.",
        "p3": "Detailed placement legalises cells into rows after global placement.",
    }
    passages = write_jsonl(tmp_path / "p.jsonl", [{"id": k, "text": v} for k, v in texts.items()])
    rows = [
        ("a", "dev", "how-to", "clock buffers skew", "p1"),
        ("b", "dev", "concept", "power grid straps", "p2"),
        ("c", "test", "how-to", "routing congestion overflow", "p0"),
        ("d", "test", "concept", "legalise cells into rows", "p3"),
        ("e", "test", "concept", "antenna diodes", "p2"),  # no word in common: a miss
    ]
    queries = write_jsonl(
        tmp_path / "q.jsonl",
        [{"id": i, "split": s, "type": t, "query": q, "positive_ids": [g]} for i, s, t, q, g in rows],
    )

    class FakeDense:  # a dense part that ranks passages in a fixed order: worse than BM25 here
        def index(self, passages):
            self.indexed, self.ids = passages, [p.id for p in passages]

        def search(self, queries, k):
            return [[(pid, 1.0 / (n + 1)) for n, pid in enumerate(reversed(self.ids))][:k] for _ in queries]

    misses = tmp_path / "misses.md"
    task = RetrievalTask(
        passages=str(passages),
        build=None,
        queries=str(queries),
        split="test",
        encoders=OmegaConf.create({}),
        dense=OmegaConf.create({}),
        bm25=OmegaConf.create({"k1": 1.5, "b": 0.75, "stemmer": "english", "stopwords": "en", "context": False}),
        hybrid=None,
        fusion=OmegaConf.create(
            {"tune_on": "dev", "metric": "mrr@10", "grid": {"minmax": {"weight": [0.5]}, "rrf": {"weight": [0.5]}}}
        ),
        ks=[1, 5],
        mrr_k=10,
        limit=None,
        index_dir=None,
        misses_file=str(misses),
        misses_k=1,
    )
    import chipadapt.eval.tasks.retrieval as module

    real = module.make_retrievers

    def with_fake_hybrid(*args, **kwargs):
        retrievers = real(*args, **kwargs)
        retrievers["hybrid"] = HybridRetriever(retrievers["bm25"], FakeDense(), 0.5, "minmax", depth=4)
        return retrievers

    module.make_retrievers = with_fake_hybrid
    try:
        with caplog.at_level("WARNING"):
            results = task.run()
    finally:
        module.make_retrievers = real
    assert results["split"] == "test" and results["bm25"]["queries"] == 3
    assert "hit@5 over 4 passages ranks every passage" in caplog.text  # 1 for any retriever: said
    assert (
        results["bm25"]["by_type"]["how-to"]["queries"] == 1 and results["bm25"]["by_type"]["concept"]["queries"] == 2
    )
    assert results["bm25"]["by_type"]["how-to"]["hit@1"] == 1.0 and "hit@1_ci" in results["bm25"]["by_type"]["concept"]
    fusion = results["hybrid"]["fusion"]
    assert fusion["tuned_on"] == "dev" and fusion["questions"] == 2 and fusion["use"] == "sparse"
    assert "fusion" not in fusion and "weight" not in fusion and "fusion" in fusion["rejected_fusion"]
    assert results["hybrid"]["hit@1"] == results["bm25"]["hit@1"]  # it answered with BM25 alone
    assert [item["id"] for item in task.items] == ["c", "d", "e"] and task.items[0]["type"] == "how-to"
    text = misses.read_text()
    assert "## bm25: 1 of 3 questions missed" in text and "### e (concept): antenna diodes" in text
    bm25_section = text.split("## hybrid")[0]
    assert "- gold `p2`: The power grid" in bm25_section
    assert "retrieved #" not in bm25_section.split("### e")[1]  # BM25 found nothing for it
