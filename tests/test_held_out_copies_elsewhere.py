"""A held-out text is never trained on under another id, in the stages that held out by id only: the
domain tokenizer's token selection and the windows that fit its new rows, SteerLM's attribute model, and
the retriever's synthetic groups (a held-out group's query or an evaluation question asked again). And
perplexity's `trained_on_overlap` counts what a DAPT run trained on, not the copies it left out."""

import json

from conftest import compose, write_jsonl
from omegaconf import OmegaConf

from chipadapt.data.holdout import held_out, held_out_mask
from chipadapt.data.source_spec import SourceSpec, source_spec
from chipadapt.data.sources import Document, read_source

LINE = "module fifo_ctrl(input clk_i, input rst_ni); assign wready_o = !fifo_full; // posedge clk_i"
SECRET = "zorblaxquint"  # a word only the held-out documents (and their copies) hold


def test_a_copy_of_a_held_out_document_in_another_source_chooses_no_token(tmp_path):
    from chipadapt.models.hf_folder import resolve_model_folder
    from chipadapt.tokenizer.augment import DomainTokenizer

    tiny = resolve_model_folder(compose(["model=tiny"], tmp_path).model)
    rtl = write_jsonl(tmp_path / "rtl.jsonl", [{"text": LINE}] * 30)
    held = held_out_mask([d.doc_id for d in read_source(SourceSpec(path=str(rtl)), "t")], 0.3)
    texts = [" ".join([LINE] * (1 + i % 3) + ["count", str(i)]) for i in range(30)]
    texts = [f"{t} {' '.join([SECRET] * 20)}" if h else t for t, h in zip(texts, held)]
    write_jsonl(rtl, [{"text": t} for t in texts])
    # The held-out documents again, under another source's ids (and re-spaced: the same text).
    copies = [t.replace(" ", "  ") for t, h in zip(texts, held) if h]
    mirror = write_jsonl(tmp_path / "mirror.jsonl", [{"text": t} for t in copies + texts[:2] * 4])
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": "The river flows past the old mill."}] * 5)
    folder = DomainTokenizer(
        cache_dir=str(tmp_path / "cache"),
        sources=OmegaConf.create({"rtl": {"path": str(rtl)}, "mirror": {"path": str(mirror)}}),
        report_general=OmegaConf.create({"prose": {"path": str(general)}}),
        domain_vocab_size=600,
        max_new_tokens=60,
        max_general_per_million=0.0,
        min_savings=2,
        max_pieces=6,
        init={"input": "mean", "output": "mean"},
        held_out=0.3,
    )(tiny)
    report = json.loads((folder / "tokenizer_report.json").read_text())
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    new_pieces = [t.replace("\u0120", " ").strip() for t, i in vocab.items() if i >= report["vocab_size_before"]]
    # Before: the mirror's copies were selection text, and pieces of the held-out-only word were chosen.
    assert [p for p in new_pieces if len(p) > 2 and p in SECRET] == []
    held_texts = {" ".join(t.split()) for t, h in zip(texts, held) if h}
    mirror_docs = read_source(SourceSpec(path=str(mirror)), "t")
    mirror_held = held_out_mask([d.doc_id for d in mirror_docs], 0.3)
    held_texts |= {" ".join(d.text.split()) for d, h in zip(mirror_docs, mirror_held) if h}
    expected = sum(not h and " ".join(d.text.split()) in held_texts for d, h in zip(mirror_docs, mirror_held))
    assert report["documents"]["mirror"]["held_out_copies_dropped"] == expected >= 1


def test_the_windows_that_fit_new_rows_leave_out_copies_of_held_out_documents():
    from chipadapt.tokenizer.windows import training_texts

    docs = [Document(f"d{i}", f"text number {i}") for i in range(20)]
    held = held_out_mask([d.doc_id for d in docs], 0.3)
    secret = [d.text for d, h in zip(docs, held) if h]
    copies = [Document(f"copy{i}", f" {t}\n") for i, t in enumerate(secret)]
    out = training_texts({"rtl": docs}, 0.3, {"general": copies})
    assert sorted(out["rtl"]) == sorted(d.text for d, h in zip(docs, held) if not h)
    # A general training source holding them under its own ids: its copies are left out too (before: kept).
    kept = training_texts({"general": copies}, 0.3, {"rtl": docs}).get("general", [])
    assert not {" ".join(t.split()) for t in kept} & set(secret)


def test_a_copy_of_a_held_out_attribute_conversation_is_not_trained_on(tmp_path):
    from chipadapt.models.hf_folder import load_tokenizer, resolve_model_folder
    from chipadapt.steerlm.attribute_data import AttributeDataModule

    cfg = compose(["stage=attribute_model", "model=tiny"], tmp_path / "run")
    records = [
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i}"},
            ],
            "attributes": {"quality": float(i % 5)},
        }
        for i in range(30)
    ]
    first = write_jsonl(tmp_path / "a.jsonl", records)
    second = write_jsonl(tmp_path / "b.jsonl", records)  # the same conversations as another source
    cfg.data.sources = {"a": {"path": str(first), "format": "chat"}, "b": {"path": str(second), "format": "chat"}}
    cfg.data.val_fraction = 0.2
    data = AttributeDataModule(cfg.data, load_tokenizer(resolve_model_folder(cfg.model)), seed=0)
    data.setup("fit")
    validated = {tuple(ids) for ids, *_ in data.val_sets["attributes"]}
    # Before: held-out conversations were trained on as the other source's copies.
    assert not validated & {tuple(ids) for ids, _, _ in data.train_items}
    assert data.stats["val_conversations"] >= 2 and data.stats["held_out_copies_dropped"] >= 1


def group(query: str, qid: str, method: str = "llm") -> dict:
    return {"query": query, "query_id": qid, "method": method, "positive_passages": [{"docid": "p1", "text": "t"}]}


def test_retriever_training_leaves_out_evaluation_questions_and_held_out_queries_asked_again(tmp_path):
    from chipadapt.retrieval.training_data import eval_questions, split_groups, without_heldout_questions

    groups = [group(f"What does signal s{i} drive?", f"q{i}") for i in range(40)]
    _, heldout = split_groups(groups, 0.2)
    assert heldout
    # The held-out queries again, under another method's ids, and a benchmark question re-cased.
    again = [group(g["query"].upper() + "  ", "x" + g["query_id"], "template") for g in heldout]
    questions = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "e1", "query": "How is the clock tree built?", "positive_ids": ["p1"], "split": "dev"},
            {"id": "e2", "query": "Which command places macros?", "positive_ids": ["p1"], "split": "test"},
        ],
    )
    ids = [f"syn{k}" for k in range(20) if not held_out(f"llmsyn{k}", 0.2)][:2]  # ids that train
    asked = [group("how is the CLOCK tree built", ids[0]), group("which command places macros", ids[1])]
    train, held = split_groups(groups + again + asked, 0.2)
    assert any(g in train for g in again) and all(g in train for g in asked)  # held out by id, they trained
    kept, dropped = without_heldout_questions(train, held, eval_questions(str(questions)))
    assert dropped == {
        "eval_question_copies_dropped": 2,  # dev and test: dev chooses settings, test reports
        "held_out_copies_dropped": sum(g in train for g in again),
    }
    assert [g for g in kept if g in again or g in asked] == []
    assert eval_questions(None) == []


def test_trained_on_overlap_does_not_count_a_copy_the_dapt_run_left_out(tmp_path):
    from chipadapt.eval.training_overlap import TrainingOverlap

    docs = [{"text": f"module m{i}(input a, output y); assign y = a ^ {i}; endmodule"} for i in range(20)]
    rtl = write_jsonl(tmp_path / "rtl.jsonl", docs)
    held = held_out_mask([d.doc_id for d in read_source(source_spec({"path": str(rtl)}, "s"), "s")], 0.2)
    secret = {d["text"] for d, h in zip(docs, held) if h}
    write_jsonl(rtl, docs + [{"text": t} for t in sorted(secret)])  # each held-out text again, on later lines
    spec = source_spec({"path": str(rtl)}, "s")
    scored = read_source(spec, "s")
    held = held_out_mask([d.doc_id for d in scored], 0.2)
    assert any(d.text in secret and not h for d, h in zip(scored, held))  # a copy the run did not hold out
    run = tmp_path / "dapt"
    (run / "model").mkdir(parents=True)
    record = {
        "kind": "train",
        "config": {
            "stage": {"datamodule": {"_target_": "chipadapt.data.datamodule.PretrainDataModule"}},
            "data": {"val_fraction": 0.2, "sources": {"rtl": {"path": str(rtl)}}},
        },
        "inputs": {"data.sources.rtl": {"path": str(rtl.resolve())}},
        "data": {"val_duplicates_dropped": 2},  # the run left its copies of held-out texts out
    }
    (run / "manifest.json").write_text(json.dumps(record))
    validated = {d.text for d, h in zip(scored, held) if h}
    flags, _ = TrainingOverlap(run / "model").trained_on(spec, scored)
    # Before: the held-out documents and their dropped copies were counted as trained on.
    assert flags == [not h and d.text not in validated for d, h in zip(scored, held)]
    # A run from before copies were dropped (no val_duplicates_dropped) did train on them.
    del record["data"]
    (run / "manifest.json").write_text(json.dumps(record))
    flags, _ = TrainingOverlap(run / "model").trained_on(spec, scored)
    trained = {d.text for d, h in zip(scored, held) if not h}
    assert flags == [d.text in trained for d in scored] and any(h and f for h, f in zip(held, flags))
