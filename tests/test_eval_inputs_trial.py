"""Evaluation inputs that used to give numbers instead of an error (trial D: S10, M4, M9, U2).

Each case is refused before any model work, in one `chipadapt: error:` line naming the file and line
or the config key; none of these tests loads a language model.
"""

import json
import logging

import numpy as np
import pytest
from conftest import ROOT, write_jsonl
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError

MCQ = {"question": "Which keyword starts a module?", "choices": ["module", "banana"], "answer": 0}
IFEVAL = {"key": 1, "prompt": "No commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
EDA = {
    "prompt": "Print the block name.",
    "script": "block = design.getBlock()\nprint(block.getName())",
    "category": "db",
}


def mcq_task(path, **changes):
    from chipadapt.eval.tasks.mcq import MCQTask

    settings = dict(
        path=str(path),
        fewshot_path=None,
        num_fewshot=0,
        limit=None,
        style="letters",
        batch_size=4,
        max_length=128,
        max_per_subject=None,
        preset="chipadapt",
        subjects=None,
    )
    return MCQTask(**{**settings, **changes})


# S10: an empty file, a one-choice question.


def test_an_empty_mcq_file_or_a_selection_of_nothing_is_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ChipadaptError, match=r"eval.mcq.path: .*empty.jsonl holds no questions"):
        mcq_task(empty)
    good = write_jsonl(tmp_path / "m.jsonl", [MCQ])
    with pytest.raises(ChipadaptError, match=r"eval.mcq.fewshot_path: .*empty.jsonl holds no questions"):
        mcq_task(good, fewshot_path=str(empty), num_fewshot=1)
    with pytest.raises(ChipadaptError, match=r"eval.mcq: no questions left .*limit=0"):
        mcq_task(good, limit=0)
    with pytest.raises(ChipadaptError, match=r"eval.mcq.num_fewshot: 3 .* holds 1"):
        mcq_task(good, fewshot_path=str(good), num_fewshot=3)
    assert len(mcq_task(good).rows) == 1


def test_a_question_with_fewer_than_two_choices_is_refused_naming_its_line(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [MCQ, {**MCQ, "choices": ["module"], "answer": 0}])
    with pytest.raises(ChipadaptError, match=r"m.jsonl:2: .*1 choice; a question needs at least 2"):
        mcq_task(path)
    eleven = write_jsonl(tmp_path / "eleven.jsonl", [{**MCQ, "choices": [str(i) for i in range(11)]}])
    with pytest.raises(ChipadaptError, match=r"eleven.jsonl:1: 11 choices, .*letters A-J"):
        mcq_task(eleven)
    assert len(mcq_task(eleven, style="cloze").rows) == 1  # cloze scores the choice text: no letters needed


def test_a_selection_that_leaves_a_task_no_items_is_refused(tmp_path):
    from chipadapt.eval.rouge import RougeL
    from chipadapt.eval.tasks.bug_summary import BugSummaryTask
    from chipadapt.eval.tasks.perplexity import PerplexityTask

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": "one document"}])
    settings = dict(max_tokens=None, max_tokens_per_document=None, max_chars_per_document=None)
    splits = OmegaConf.create({"mine": {"path": str(corpus), "held_out": 0.02}})
    with pytest.raises(ChipadaptError, match=r"eval.perplexity.splits.mine: no documents left of .*held_out=0.02"):
        PerplexityTask(splits, 64, None, **settings).documents("mine")
    threads = write_jsonl(tmp_path / "t.jsonl", [{"id": "a", "thread": "[a] fixed"}])
    with pytest.raises(ChipadaptError, match=r"eval.bug_summary: no threads left .*limit=0"):
        BugSummaryTask(str(threads), "thread", 0, 64, 4, 1, None, RougeL(use_stemmer=True))  # before any model


# S10: IFEval instruction ids.


def test_an_unknown_ifeval_instruction_id_is_refused_naming_the_line_and_the_id(tmp_path):
    from chipadapt.eval.tasks.ifeval import read_ifeval

    typo = {
        **IFEVAL,
        "key": 2,
        "instruction_id_list": ["punctuation:no_comma", "no_such:instruction"],
        "kwargs": [{}, {}],
    }
    path = write_jsonl(tmp_path / "ifeval.jsonl", [IFEVAL, typo])
    with pytest.raises(ChipadaptError) as err:
        read_ifeval(path)
    message = str(err.value)
    assert "ifeval.jsonl:2: unknown instruction id 'no_such:instruction'" in message
    assert "python -m chipadapt.eval.tasks.ifeval" in message  # how to list the known ids
    near = write_jsonl(tmp_path / "near.jsonl", [{**IFEVAL, "instruction_id_list": ["punctuation:no_commas"]}])
    with pytest.raises(ChipadaptError, match=r"did you mean 'punctuation:no_comma'"):
        read_ifeval(near)
    not_objects = write_jsonl(tmp_path / "kw.jsonl", [{**IFEVAL, "kwargs": ["x"]}])
    with pytest.raises(ChipadaptError, match=r"kw.jsonl:1: .*kwargs"):
        read_ifeval(not_objects)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ChipadaptError, match=r"empty.jsonl holds no prompts"):
        read_ifeval(empty)
    assert len(read_ifeval(write_jsonl(tmp_path / "ok.jsonl", [IFEVAL]))) == 1


def test_the_ifeval_module_lists_the_known_instruction_ids(capsys):
    from chipadapt.eval.tasks.ifeval import known_instruction_ids, main

    main()
    printed = capsys.readouterr().out.split()
    assert "punctuation:no_comma" in printed and printed == sorted(known_instruction_ids())


# S10: EDA scripts.


def test_an_eda_script_record_without_a_category_is_refused_naming_its_line(tmp_path):
    from chipadapt.eval.tasks.eda_script import read_rows

    path = write_jsonl(tmp_path / "eda.jsonl", [EDA, {"prompt": EDA["prompt"], "script": EDA["script"]}])
    with pytest.raises(ChipadaptError, match=r"eda.jsonl:2: .*'category'"):
        read_rows(path)
    blank = write_jsonl(tmp_path / "blank.jsonl", [{**EDA, "script": "  \n"}])
    with pytest.raises(ChipadaptError, match=r"blank.jsonl:1: .*'script'"):
        read_rows(blank)


def test_a_category_no_script_has_is_refused_before_generation(tmp_path):
    from chipadapt.eval.rouge import RougeL
    from chipadapt.eval.tasks.eda_script import EDAScriptTask

    path = write_jsonl(tmp_path / "eda.jsonl", [EDA])
    with pytest.raises(ChipadaptError, match=r"eval.eda_script.categories: 'flwo' .*\(categories in .*: db\)"):
        EDAScriptTask(str(path), 1.0, ["db", "flwo"], None, 8, 1, RougeL(use_stemmer=True))


@pytest.mark.parametrize("empty", ["", "\n\n\n\n\n", "   ", "# only a comment\n", "\n# a\n# b\n"])
def test_a_script_with_no_statement_is_not_valid_syntax(empty):
    from chipadapt.eval.eda.calls import parses
    from chipadapt.eval.tasks.eda_script import script_scores

    assert not parses(empty)
    # A reference that makes no call: the empty prediction used to make "every call" of it.
    scores = script_scores(empty, "x = 1\n")
    assert scores["syntax"] is False and scores["all_calls"] is False
    assert parses("pass\n") and parses("import openroad  # the API\n")


# M4: the QA format.


def test_qa_reads_the_documented_format_and_the_shipped_questions_by_default(tmp_path):
    from chipadapt.eval.tasks.qa import read_qa

    for name in ("qa_rouge", "rag_qa"):
        assert OmegaConf.load(ROOT / "conf" / "eval" / f"{name}.yaml").question_key is None
    documented = write_jsonl(tmp_path / "qa.jsonl", [{"question": "What is CTS?", "answer": "Clock tree synthesis."}])
    assert read_qa(documented, None, "answer")[0]["question"] == "What is CTS?"
    shipped = ROOT / "src" / "chipadapt" / "resources" / "retrieval" / "openroad_questions.jsonl"
    rows = read_qa(shipped, None, "answer")
    assert len(rows) == 179 and rows[0]["question"].startswith("How do I reduce")
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"question": "q", "answer": "a"}, {"query": "q", "answer": "a"}])
    with pytest.raises(ChipadaptError, match=r"mixed.jsonl:2: needs string fields 'question' and 'answer'"):
        read_qa(mixed, None, "answer")
    blank = write_jsonl(tmp_path / "blank.jsonl", [{"question": "q", "answer": " "}])
    with pytest.raises(ChipadaptError, match=r"blank.jsonl:1: .*empty"):
        read_qa(blank, None, "answer")


# M9: hf: splits for perplexity.


def test_a_perplexity_split_takes_an_hf_path_like_other_eval_paths(tmp_path):
    datasets = pytest.importorskip("datasets")
    from chipadapt.eval.tasks.perplexity import PerplexityTask

    folder = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["train one", "train two"]}),
            "validation": datasets.Dataset.from_dict({"text": ["held one"]}),
        }
    ).save_to_disk(str(folder))

    def task(spec):
        settings = dict(max_tokens=None, max_tokens_per_document=None, max_chars_per_document=None)
        return PerplexityTask(OmegaConf.create({"mine": spec}), 64, None, **settings)

    assert [d.text for d in task({"path": f"hf:{folder}"}).documents("mine")] == ["train one", "train two"]
    assert [d.text for d in task({"path": f"hf:{folder}:validation"}).documents("mine")] == ["held one"]
    with pytest.raises(ChipadaptError, match=r"eval.perplexity.splits.mine.split: 'train' .* names 'validation'"):
        task({"path": f"hf:{folder}:validation", "split": "train"})
    with pytest.raises(ChipadaptError, match=r"eval.perplexity.splits.mine.format: 'jsonl' .* hf:"):
        task({"path": f"hf:{folder}", "format": "jsonl"})


# U2: where dense indexes are kept.


def retrieval_task(tmp_path, index_dir, **changes):
    from chipadapt.eval.tasks.retrieval import RetrievalTask

    settings = dict(
        passages=str(tmp_path / "in" / "p.jsonl"),
        build=None,
        queries=str(tmp_path / "in" / "q.jsonl"),
        split="all",
        encoders=OmegaConf.create({"mine": {"path": str(tmp_path / "encoder"), "package": None}}),
        dense=OmegaConf.create({}),
        bm25=None,
        hybrid=None,
        fusion=None,
        ks=[1],
        mrr_k=10,
        limit=None,
        index_dir=None if index_dir is None else str(index_dir),
        misses_file=None,
        misses_k=1,
    )
    return RetrievalTask(**{**settings, **changes})


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "p.jsonl", [{"id": "p1", "text": "placement"}])
    write_jsonl(tmp_path / "in" / "q.jsonl", [{"id": "q1", "query": "where", "positive_ids": ["p1"]}])
    (tmp_path / "encoder").mkdir()
    (tmp_path / "encoder" / "config.json").write_text("{}")
    return tmp_path


def test_an_index_dir_that_is_holds_or_lies_inside_an_input_is_refused(inputs):
    with pytest.raises(ChipadaptError, match=r"eval.retrieval.index_dir: .*in holds eval.retrieval.passages"):
        retrieval_task(inputs, inputs / "in")
    with pytest.raises(ChipadaptError, match=r"index_dir: .*p.jsonl is eval.retrieval.passages itself"):
        retrieval_task(inputs, inputs / "in" / "p.jsonl")
    with pytest.raises(ChipadaptError, match=r"index_dir: .*encoder/idx lies inside eval.retrieval.encoders.mine.path"):
        retrieval_task(inputs, inputs / "encoder" / "idx")
    corpus = inputs / "corpus"
    corpus.mkdir()
    build = OmegaConf.create({"sources": {"docs": {"path": str(corpus)}, "dropped": None}})
    with pytest.raises(ChipadaptError, match=r"index_dir: .*corpus/idx lies inside eval.retrieval.build.sources.docs"):
        retrieval_task(inputs, corpus / "idx", passages=None, build=build)
    assert not (inputs / "in" / "mine").exists() and not (inputs / "encoder" / "idx").exists()


def test_an_index_dir_holding_files_the_index_writer_did_not_write_is_refused(inputs):
    from chipadapt.io.outputs import write_marker

    mine = inputs / "myout_existing"
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "todo.txt").write_text("keep me\n")
    with pytest.raises(
        ChipadaptError, match=r"eval.retrieval.index_dir: .*todo.txt was not written by the dense index"
    ):
        retrieval_task(inputs, mine)
    # A fresh folder, an empty one, and one holding only indexes (with their build locks) are taken.
    retrieval_task(inputs, inputs / "fresh")
    (inputs / "empty").mkdir()
    retrieval_task(inputs, inputs / "empty")
    entry = inputs / "idx" / "mine" / "0123456789abcdef"
    entry.mkdir(parents=True)
    write_marker(entry, "chipadapt")
    (entry.parent / ".0123456789abcdef.build.lock").write_text("")
    retrieval_task(inputs, inputs / "idx")
    (inputs / "idx" / "README").write_text("mine\n")
    with pytest.raises(ChipadaptError, match=r"README was not written by the dense index"):
        retrieval_task(inputs, inputs / "idx")


def test_a_retrieval_limit_of_zero_is_refused(inputs):
    with pytest.raises(ChipadaptError, match=r"eval.retrieval: no questions left .*limit=0"):
        retrieval_task(inputs, None, encoders=OmegaConf.create({}), limit=0).run()


def test_rag_qa_checks_its_index_dir_too(inputs):
    from chipadapt.eval.rouge import RougeL
    from chipadapt.eval.tasks.qa import QATask

    (inputs / "qa").mkdir()
    qa = write_jsonl(inputs / "qa" / "qa.jsonl", [{"question": "q", "answer": "a"}])
    retrieval = OmegaConf.create(
        {"passages": str(inputs / "in" / "p.jsonl"), "encoders": {}, "build": None, "index_dir": str(qa.parent)}
    )
    with pytest.raises(ChipadaptError, match=r"eval.rag_qa.retrieval.index_dir: .*qa holds eval.rag_qa.path"):
        QATask("rag_qa", str(qa), None, "answer", None, 4, 1, RougeL(use_stemmer=True), True, retrieval)


# The log line of an index that is not kept.


def test_the_embedding_log_says_nothing_is_kept_without_an_index_dir(caplog):
    from chipadapt.retrieval.passages import Passage
    from chipadapt.retrieval.retrievers import DenseRetriever

    class Encoder:
        def encode(self, texts, **kwargs):
            return np.eye(len(texts), 4, dtype=np.float32)

    dense = DenseRetriever.__new__(DenseRetriever)  # no encoder folder: only the indexing path runs
    dense.encoder, dense.context, dense.batch_size, dense.index_dir, dense.search_device = (
        Encoder(),
        False,
        2,
        None,
        None,
    )
    caplog.set_level(logging.INFO, logger="chipadapt.retrieval.retrievers")
    dense.index([Passage("p1", "one", "d"), Passage("p2", "two", "d")])
    assert "None" not in caplog.text and "not kept" in caplog.text
    assert json.dumps(dense.ids) == '["p1", "p2"]'
