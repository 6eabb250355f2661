"""Cross-encoder reranker: pair scorer from an encoder folder, listwise training, reranking a candidate list."""

import pytest
import torch
from conftest import write_jsonl
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passages import Passage

TOPICS = {
    "router": "the global router assigns nets to routing regions and reports congestion",
    "cts": "clock tree synthesis inserts buffers so the clock reaches every flop with low skew",
    "pdn": "the power grid is built from straps and rings on the top metal layers",
    "dpl": "detailed placement legalises cells into rows after global placement",
}
QUERIES = {
    "router": "which step assigns nets to routing regions",
    "cts": "how are clock buffers inserted for low skew",
    "pdn": "how is the power grid built from straps",
    "dpl": "what legalises cells into rows",
}
OPTIM = OmegaConf.create(
    {
        "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3, "weight_decay": 0.0},
        "scheduler": None,
    }
)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer random BERT encoder folder (no scoring head) with a word-level vocabulary of the test texts."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    words = sorted({w for text in [*TOPICS.values(), *QUERIES.values()] for w in text.split()})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=5 + len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,  # a deterministic toy: the test checks what training learns
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def groups() -> list[dict]:
    return [
        {
            "query_id": f"q{i}",
            "query": QUERIES[name],
            "style": "question",
            "positive_passages": [{"docid": name, "text": TOPICS[name]}],
            "negative_passages": [{"docid": o, "text": TOPICS[o]} for o in TOPICS if o != name],
        }
        for i, name in enumerate(TOPICS)
    ]


def test_scorer_starts_from_an_encoder_with_only_a_new_head_and_refuses_a_headless_reranker(tiny_bert):
    from chipadapt.retrieval.pair_scorer import PairScorer

    scorer = PairScorer(str(tiny_bert), None, 64, from_encoder=True, reset_pooler=False)
    scores = scorer.score(["a query"] * 2, [TOPICS["router"], TOPICS["cts"]], batch_size=2)
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    with pytest.raises(ChipadaptError, match="lacks trained weights for classifier"):
        PairScorer(str(tiny_bert), None, 64, from_encoder=False, reset_pooler=False)


def test_reranker_training_lowers_the_loss_and_puts_the_positive_first(tiny_bert, tmp_path):
    import lightning as L

    from chipadapt.modules.cross_encoder import CrossEncoderModule
    from chipadapt.retrieval.pair_scorer import PairScorer
    from chipadapt.retrieval.rerank import RerankedRetriever, Reranker
    from chipadapt.retrieval.reranker_datamodule import RerankerDataModule
    from chipadapt.retrieval.retrievers import BM25Retriever

    torch.manual_seed(0)
    scorer = PairScorer(str(tiny_bert), None, 64, from_encoder=True, reset_pooler=False)
    train_file = write_jsonl(tmp_path / "train.jsonl", groups())
    dm = RerankerDataModule(str(train_file), 0.0, None, scorer, n_passages=4, batch_size=4, seed=0)
    module = CrossEncoderModule(scorer, 4, OPTIM, head_lr=None)
    batch = dm.collate([dm.train_set[i] for i in range(4)])
    with torch.no_grad():
        first = float(torch.nn.functional.cross_entropy(module(batch), torch.zeros(4, dtype=torch.long)))
    trainer = L.Trainer(
        max_steps=150,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    bias = scorer.model.classifier.bias.detach().clone()
    trainer.fit(module, dm)
    # The listwise loss is blind to a shared offset: the head's bias is frozen, not walked by noise.
    assert torch.equal(scorer.model.classifier.bias, bias)
    with torch.no_grad():
        last = float(torch.nn.functional.cross_entropy(module(batch), torch.zeros(4, dtype=torch.long)))
    assert last < first * 0.5

    scorer.save(tmp_path / "reranker")
    reranker = Reranker(str(tmp_path / "reranker"), None, top_k=4, batch_size=8, max_tokens=64, device="cpu")
    passages = [Passage(name, text, "d") for name, text in TOPICS.items()]
    # A first stage that ranks the positive last: only the reranker can put it first.
    first_stage = BM25Retriever(k1=1.5, b=0.75, stemmer=None, stopwords=None, context=False)
    retriever = RerankedRetriever(first_stage, reranker)
    retriever.index(passages)
    reciprocal_ranks = []
    for name, query in QUERIES.items():
        wrong_order = [(o, 1.0) for o in TOPICS if o != name] + [(name, 0.0)]
        reranked = reranker.rerank(query, wrong_order, retriever.texts)
        assert sorted(p for p, _ in reranked) == sorted(TOPICS)
        reciprocal_ranks.append(1 / (1 + [p for p, _ in reranked].index(name)))
    # The first stage's MRR is 0.25 (every positive last); the reranker lifts most positives to the top.
    assert sum(reciprocal_ranks) / len(reciprocal_ranks) >= 0.75, reciprocal_ranks
    hits = retriever.search(list(QUERIES.values()), k=2)
    assert all(1 <= len(row) <= 2 for row in hits)
    assert reranker.seconds > 0

    # eval=retrieval reports the reranked first stage beside it, with the milliseconds it adds.
    from chipadapt.eval.tasks.retrieval import RetrievalTask
    from chipadapt.retrieval.passages import write_passages

    write_passages(passages, tmp_path / "passages.jsonl")
    queries = [{"id": name, "query": q, "positive_ids": [name], "split": "test"} for name, q in QUERIES.items()]

    def task_settings(questions: list[dict], fusion: dict | None) -> dict:
        return dict(
            passages=str(tmp_path / "passages.jsonl"),
            build=None,
            queries=str(write_jsonl(tmp_path / f"queries{len(fusion or {})}.jsonl", questions)),
            split="test",
            encoders=OmegaConf.create({}),
            dense=OmegaConf.create({}),
            bm25=OmegaConf.create({"k1": 1.5, "b": 0.75, "stemmer": None, "stopwords": None, "context": False}),
            hybrid=None,
            fusion=OmegaConf.create(fusion) if fusion else None,
            ks=[1, 4],
            mrr_k=10,
            limit=None,
            index_dir=None,
            misses_file=None,
            misses_k=1,
        )

    rerank = {"path": str(tmp_path / "reranker"), "top_k": 4, "apply_to": ["bm25"], "batch_size": 8, "max_tokens": 64}
    task = RetrievalTask(
        **task_settings(queries, None), reranker=OmegaConf.create({**rerank, "weight": 1.0, "weights": []})
    )
    results = task.run()
    assert set(results) >= {"bm25", "bm25+rerank"} and results["bm25+rerank"]["rerank_ms_per_query"] > 0
    assert results["bm25+rerank"]["hit@4"] == results["bm25"]["hit@4"]  # reranking the top 4 keeps the same 4
    assert results["bm25+rerank"]["mrr@10"] >= 0.75
    assert all("bm25+rerank" in item["prediction"] for item in task.items)

    # The weight chosen on the dev questions, reported on the test ones; bad settings fail before any work.
    split_queries = [{**q, "split": "dev" if i % 2 else "test"} for i, q in enumerate(queries)]
    settings = task_settings(split_queries, {"tune_on": "dev", "metric": "mrr@10", "grid": {}})
    chosen = RetrievalTask(
        **settings, reranker=OmegaConf.create({**rerank, "weight": None, "weights": [0.0, 0.5, 1.0]})
    ).run()["bm25+rerank"]
    assert chosen["rerank"]["tuned_on"] == "dev" and chosen["rerank"]["questions"] == 2
    assert chosen["rerank"]["weight"] in (0.0, 0.5, 1.0) and "chosen_on_reported_questions" not in chosen["rerank"]
    for bad, message in [
        ({"weight": None, "weights": []}, "reranker.weights"),
        ({"weight": True, "weights": []}, "reranker.weight: True"),
        ({"weight": 1.5, "weights": []}, "reranker.weight: 1.5"),
    ]:
        with pytest.raises(ChipadaptError, match=message):
            RetrievalTask(**settings, reranker=OmegaConf.create({**rerank, **bad}))
    with pytest.raises(ChipadaptError, match="fusion.tune_on, which is not set"):
        RetrievalTask(
            **{**settings, "fusion": None}, reranker=OmegaConf.create({**rerank, "weight": None, "weights": [0.0]})
        )


def test_reranker_data_holds_out_by_query_id_filters_styles_and_names_bad_settings(tiny_bert, tmp_path):
    from chipadapt.retrieval.pair_scorer import PairScorer
    from chipadapt.retrieval.reranker_datamodule import RerankerDataModule
    from chipadapt.retrieval.training_data import split_groups

    many = [dict(g, query_id=f"q{i}", style="flag" if i % 2 else "keyword") for i, g in enumerate(groups() * 25)]
    train, val = split_groups(many, 0.2)
    again = split_groups(list(reversed(many)), 0.2)
    assert {g["query_id"] for g in val} == {g["query_id"] for g in again[1]} and 0 < len(val) < len(many)
    scorer = PairScorer(str(tiny_bert), None, 64, from_encoder=True, reset_pooler=False)
    path = write_jsonl(tmp_path / "t.jsonl", groups())
    styled = write_jsonl(tmp_path / "styled.jsonl", many)
    flags = RerankerDataModule(str(styled), 0.0, ["flag"], scorer, n_passages=2, batch_size=2, seed=0)
    assert {g["style"] for g in flags.train_set.groups} == {"flag"}
    with pytest.raises(ChipadaptError, match="n_passages=1"):
        RerankerDataModule(str(path), 0.0, None, scorer, n_passages=1, batch_size=2, seed=0)
    with pytest.raises(ChipadaptError, match="no training groups"):
        RerankerDataModule(str(path), 0.0, ["error"], scorer, n_passages=2, batch_size=2, seed=0)


class _KnownScorer:
    """A cross-encoder stand-in that scores by a fixed table: {passage text: score}."""

    def __init__(self, table: dict[str, float]):
        self.table = table

    def score(self, queries, passages, batch_size):
        return [self.table[p] for p in passages]


def _reranker(table: dict[str, float], top_k: int):
    from chipadapt.retrieval.rerank import Reranker

    reranker = Reranker.__new__(Reranker)
    reranker.scorer, reranker.top_k, reranker.batch_size, reranker.weight, reranker.seconds = (
        _KnownScorer(table),
        top_k,
        8,
        1.0,
        0.0,
    )
    return reranker


def test_the_mix_runs_from_the_first_stage_order_to_the_cross_encoders():
    from chipadapt.retrieval.rerank import mix

    head = [("a", 9.0), ("b", 5.0), ("c", 4.0)]
    cross = [0.0, 1.0, 3.0]  # the cross-encoder puts them in the reverse order
    assert [p for p, _ in mix(head, cross, 0.0)] == ["a", "b", "c"]
    assert [p for p, _ in mix(head, cross, 1.0)] == ["c", "b", "a"]
    # Half and half of the min-max scaled scores: a (1.0 + 0.0) / 2, b (0.2 + 0.33) / 2, c (0.0 + 1.0) / 2;
    # a and c tie, and the first stage's order breaks it.
    assert [p for p, _ in mix(head, cross, 0.5)] == ["a", "c", "b"]
    assert mix([("a", 1.0)], [5.0], 0.7) == [("a", 1.0)]  # one candidate: nothing to scale


class _FixedFirstStage:
    """A first stage that returns the same ranking for every question, with falling scores."""

    def __init__(self, order: list[str]):
        self.order = order

    def index(self, passages) -> None:
        self.indexed = passages

    def search(self, queries, k):
        return [[(pid, float(len(self.order) - r)) for r, pid in enumerate(self.order[:k])] for _ in queries]


def test_the_cross_encoders_share_is_chosen_on_dev_and_a_harmful_one_gets_none():
    from chipadapt.retrieval.rerank import RerankedRetriever

    passages = [Passage(name, text, "d") for name, text in TOPICS.items()]
    order = ["router", "cts", "pdn", "dpl"]
    queries = [QUERIES["cts"], QUERIES["cts"] + " today"]  # the answer is second in the first stage
    gold = [("cts",), ("cts",)]

    def reranked(cross: dict[str, float]):
        retriever = RerankedRetriever(_FixedFirstStage(order), _reranker({TOPICS[n]: v for n, v in cross.items()}, 4))
        retriever.index(passages)
        return retriever

    # A cross-encoder that puts the answer last: it only hurts, so it gets weight 0, and the reranked
    # retriever answers exactly as its first stage.
    harmful = reranked({"router": 3.0, "cts": 0.0, "pdn": 2.0, "dpl": 1.0})
    choice = harmful.choose_weight(queries, gold, [0.0, 0.5, 1.0], "mrr@10", [1, 4], 10)
    assert choice["weight"] == 0.0 and choice["grid"] == pytest.approx({"0.0": 1 / 2, "0.5": 1 / 3, "1.0": 1 / 4})
    assert [[p for p, _ in row] for row in harmful.search(queries, 4)] == [order, order]

    # One that puts the answer first gets the smallest share that does so.
    helpful = reranked({"router": 0.0, "cts": 3.0, "pdn": 0.0, "dpl": 0.0})
    choice = helpful.choose_weight(queries, gold, [0.0, 0.3, 0.6, 1.0], "mrr@10", [1, 4], 10)
    assert choice["weight"] == 0.3 and choice["grid"]["0.3"] == 1.0
    assert [row[0][0] for row in helpful.search(queries, 4)] == ["cts", "cts"]


def test_a_reranker_starts_with_an_identity_pooler_and_its_new_head_gets_its_own_learning_rate(tiny_bert):
    from chipadapt.modules.optim import optimizers_for
    from chipadapt.retrieval.pair_scorer import PairScorer

    kept = PairScorer(str(tiny_bert), None, 64, from_encoder=True, reset_pooler=False)
    assert not torch.equal(kept.model.bert.pooler.dense.weight, torch.eye(32))  # as loaded: BERT's random init
    scorer = PairScorer(str(tiny_bert), None, 64, from_encoder=True, reset_pooler=True)
    assert torch.equal(scorer.model.bert.pooler.dense.weight, torch.eye(32))
    assert not scorer.model.bert.pooler.dense.bias.any()
    optimizer = optimizers_for(scorer, OPTIM, None, {prefix: 0.5 for prefix in scorer.head_parameters})
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(scorer.model.classifier.weight)] == 0.5 and lr_of[id(scorer.model.classifier.bias)] == 0.5
    assert {lr_of[id(p)] for n, p in scorer.named_parameters() if "classifier" not in n} == {1e-3}
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay_of[id(scorer.model.classifier.bias)] == 0.0  # biases are never decayed, whatever their lr


def test_parameter_groups_keep_their_number_and_order_whatever_the_model_trains():
    """A checkpoint's optimizer state is matched to the groups by position: a model that trains only
    matrices (LoRA) still gets the [decayed, not decayed] pair, and groups with their own rate come after."""
    from chipadapt.modules.optim import decay_groups

    only_matrices = torch.nn.Linear(3, 3, bias=False)
    groups = decay_groups(only_matrices, 0.1)
    assert [len(g["params"]) for g in groups] == [1, 0] and [g["weight_decay"] for g in groups] == [0.1, 0.0]
    head = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    groups = decay_groups(head, 0.1, {"1.": 0.5})
    assert [(len(g["params"]), g.get("lr")) for g in groups] == [(1, None), (1, None), (1, 0.5), (1, 0.5)]
