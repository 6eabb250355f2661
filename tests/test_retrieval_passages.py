"""Retrieval's ground: passages cut from documents and files, the metrics, and the hand-written questions."""

import json

import pytest
from conftest import ROOT, SHARED_DATA, write_jsonl

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passages import build_passages, chunk_text, read_passages, structural_blocks

DOC = """# Placement

Global placement spreads cells over the core. It minimises wirelength while keeping density below a target.

```tcl
global_placement -density 0.7
detailed_placement
```

## Routing

The global router assigns nets to routing regions; the detailed router draws the wires and vias.
""" + "\n\n".join(f"Paragraph {i} talks about clock tree synthesis and buffers in some detail." for i in range(12))


def test_chunks_keep_code_blocks_whole_and_headings_with_their_section():
    blocks = structural_blocks(DOC)
    assert any(b.startswith("```tcl") and b.endswith("```") and "detailed_placement" in b for b in blocks)
    chunks = chunk_text(DOC, max_chars=200, min_chars=20, overlap_chars=0)
    assert len(chunks) > 3
    for chunk in chunks:
        assert not chunk.rstrip().splitlines()[-1].startswith("#"), "a heading ended a passage"
        assert chunk.count("```") % 2 == 0, "a code block was cut"
        assert len(chunk) <= 200 + 20
    assert chunks[0].startswith("# Placement")
    overlapping = chunk_text(DOC, max_chars=200, min_chars=20, overlap_chars=40)
    assert overlapping[1].split("\n")[0] in chunks[0]  # the tail of the previous passage is repeated


def test_passage_ids_are_stable_and_jsonl_sources_filter_by_field(tmp_path):
    corpus = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"path": "docs/a.md", "lang": "markdown", "text": DOC},
            {"path": "src/a.tcl", "lang": "tcl", "text": "puts hello\n" * 40},
        ],
    )
    spec = {"docs": {"path": str(corpus), "where": {"lang": "markdown"}}}
    first, again = build_passages(spec, 300, 40, 0), build_passages(spec, 300, 40, 0)
    assert [p.id for p in first] == [p.id for p in again]
    assert all(p.id.startswith("docs:docs/a.md#") and p.source == "docs:docs/a.md" for p in first)
    with pytest.raises(ChipadaptError, match="passages.sources.docs: no passages"):
        build_passages({"docs": {"path": str(corpus), "where": {"lang": "rst"}}}, 300, 40, 0)


def test_passages_file_is_used_as_given_and_duplicate_ids_are_named(tmp_path):
    good = write_jsonl(tmp_path / "p.jsonl", [{"id": "x1", "text": "a " * 400}, {"id": 7, "text": "b"}])
    passages = read_passages(good)
    assert [p.id for p in passages] == ["x1", "7"] and len(passages[0].text) == 800  # not re-chunked
    dup = write_jsonl(tmp_path / "d.jsonl", [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}])
    with pytest.raises(ChipadaptError, match=r"d.jsonl:2: duplicate passage id 'x'"):
        read_passages(dup)


def test_metrics_match_a_hand_computed_example():
    from chipadapt.retrieval.metrics import retrieval_metrics

    m = retrieval_metrics([["a", "b", "c"], ["x"], ["q", "r"]], [("b",), ("y",), ("q", "z")], [1, 2, 5], 10)
    assert m["hit@1"] == pytest.approx(1 / 3) and m["hit@2"] == pytest.approx(2 / 3)
    assert m["recall@2"] == pytest.approx((1 + 0 + 0.5) / 3)  # z was never retrieved: q's recall is 1/2
    assert m["mrr@10"] == pytest.approx((1 / 2 + 0 + 1) / 3)


def test_per_query_scores_agree_with_torchmetrics_retrieval_metrics():
    import random

    import torch
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalRecall

    from chipadapt.retrieval.metrics import retrieval_metrics

    rng = random.Random(3)
    hits = [rng.sample([f"p{i}" for i in range(12)], 10) for _ in range(30)]
    positives = [tuple(rng.sample([f"p{i}" for i in range(12)], rng.randint(1, 3))) for _ in range(30)]
    ours = retrieval_metrics(hits, positives, [1, 5], 10)
    # torchmetrics sees every passage of the 12 ranked (unretrieved ones last), so recall's denominator
    # is all positives.
    preds, target, index = [], [], []
    for q, (ranked, gold) in enumerate(zip(hits, positives)):
        order = ranked + [p for p in (f"p{i}" for i in range(12)) if p not in ranked]
        preds += [float(len(order) - r) if r < 10 else 0.0 for r in range(len(order))]
        target += [p in gold for p in order]
        index += [q] * len(order)
    args, kw = (torch.tensor(preds), torch.tensor(target)), {"indexes": torch.tensor(index)}
    assert ours["hit@5"] == pytest.approx(float(RetrievalHitRate(top_k=5)(*args, **kw)))
    assert ours["recall@5"] == pytest.approx(float(RetrievalRecall(top_k=5)(*args, **kw)))
    assert ours["mrr@10"] == pytest.approx(float(RetrievalMRR(top_k=10)(*args, **kw)))
    assert ours["hit@5_ci"][0] <= ours["hit@5"] <= ours["hit@5_ci"][1] and ours["hit@5_n"] == 30


def test_hand_written_questions_point_at_passages_that_hold_their_evidence():
    if not (SHARED_DATA / "corpus" / "openroad.jsonl").is_file():
        pytest.skip("shared data not present")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    # The preset with the settings it includes from conf/passages/common/.
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        root = compose("passages/openroad_docs", overrides=[f"+paths.shared_data={SHARED_DATA}"])
    plain = OmegaConf.to_container(root, resolve=True)["passages"]
    passages = {
        p.id: p
        for p in build_passages(plain["sources"], plain["max_chars"], plain["min_chars"], plain["overlap_chars"])
    }
    rows = [
        json.loads(line)
        for line in (ROOT / "src/chipadapt/resources/retrieval/openroad_questions.jsonl").read_text().splitlines()
    ]
    assert len(rows) >= 30 and len({r["query"] for r in rows}) == len(rows)
    for row in rows:
        assert all(pid in passages for pid in row["positive_ids"]), row["id"]
        assert any(row["evidence"] in passages[pid].text for pid in row["positive_ids"]), row["id"]
        assert row["answer"] and row["evidence"] not in row["query"]  # questions are asked, not copied
