"""Evaluation inputs that trial E found accepted silently or refused with a traceback: repeated item
ids, few-shot runs with fewer shots than asked, the eda_script split, IFEval kwargs, file encodings,
an empty task list, the manifest's inputs, and windows longer than the model's context."""

import gzip
import json
import logging
import subprocess
import sys

import pytest
from conftest import ROOT, SHARED_DATA, write_jsonl
from helpers.models import tiny_llama
from test_eval_inputs_trial import mcq_task

from chipadapt.errors import ChipadaptError

MCQ = {"question": "Which keyword starts a module?", "choices": ["module", "banana"], "answer": 0, "subject": "hdl"}
IFEVAL = {"key": 1, "prompt": "No commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
WORDS = "length_constraints:number_words"
EDA = {"prompt": "Print the block name.", "script": "print(design.getBlock().getName())", "category": "db"}


def eda_task(path, eval_fraction=0.2, **changes):
    from chipadapt.eval.rouge import RougeL
    from chipadapt.eval.tasks.eda_script import EDAScriptTask

    settings = dict(categories=None, limit=None, max_new_tokens=8, batch_size=2, rouge=RougeL(use_stemmer=True))
    return EDAScriptTask(str(path), eval_fraction, **{**settings, **changes})


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    # A 64-token context: shorter than the tasks' configured windows (mcq 2048, perplexity 1024).
    return tiny_llama(tmp_path_factory.mktemp("tiny"), max_position_embeddings=64)


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    return load_causal_lm(tiny_folder, "float32", "sdpa").eval(), load_tokenizer(tiny_folder)


# 1. Repeated ids: items are matched across runs by id, so a second record with the same id would
# replace the first in every comparison.


def test_a_repeated_mcq_id_is_refused_naming_both_lines(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{**MCQ, "id": "same"}, {**MCQ, "question": "Other?", "id": "same"}])
    with pytest.raises(ChipadaptError, match=r"m.jsonl:2: id 'same' repeats line 1"):
        mcq_task(path)


def test_the_same_question_twice_without_ids_gets_numbered_ids_not_one(tmp_path, monkeypatch):
    # MMLU itself repeats a few questions word for word (3 in the shipped subset): each stays an item.
    import chipadapt.eval.tasks.mcq as mcq_module

    path = write_jsonl(tmp_path / "m.jsonl", [MCQ, {**MCQ, "subject": "other"}, {**MCQ, "id": "mine"}])
    task = mcq_task(path)
    monkeypatch.setattr(mcq_module, "continuation_logprobs", lambda m, t, pairs, *a, **k: [0.0] * len(pairs))
    task.run(None, None)
    ids = [item["id"] for item in task.items]
    assert len(set(ids)) == 3 and ids[1] == ids[0] + "#2" and ids[2] == "mine"


@pytest.mark.parametrize(
    "reader",
    ["ifeval", "qa", "bug_summary", "verilog", "self_checking", "queries"],
)
def test_a_repeated_id_is_refused_by_every_reader(tmp_path, reader):
    from chipadapt.eval.tasks.bug_summary import read_threads
    from chipadapt.eval.tasks.ifeval import read_ifeval
    from chipadapt.eval.tasks.qa import read_qa
    from chipadapt.eval.verilog.self_checking import SelfCheckingShape
    from chipadapt.eval.verilog.verilogeval import VerilogEvalShape
    from chipadapt.retrieval.queries import read_queries

    verilog = {"task_id": "t1", "prompt": "p", "ref": "module RefModule; endmodule", "test": "module tb; endmodule"}
    verilog["module"] = "TopModule"  # a self-checking task names its design, or its testbench instantiates it
    cases = {
        "ifeval": ([IFEVAL, {**IFEVAL, "prompt": "Other."}], "key '1'", read_ifeval),
        "qa": ([{"id": 7, "question": "q", "answer": "a"}, {"id": "7", "question": "r", "answer": "b"}], "id '7'", 0),
        "bug_summary": ([{"id": "b", "thread": "x"}, {"id": "b", "thread": "y"}], "id 'b'", None),
        "verilog": ([verilog, verilog], "task_id 't1'", VerilogEvalShape().read),
        "self_checking": ([verilog, verilog], "task_id 't1'", None),
        "queries": ([{"id": "q", "query": "a", "positive_ids": ["p"]}] * 2, "id 'q'", read_queries),
    }
    rows, named, read = cases[reader]
    read = (
        read
        or {
            "qa": lambda p: read_qa(p, None, "answer"),
            "bug_summary": lambda p: read_threads(p, "thread"),
            "self_checking": lambda p: SelfCheckingShape("PASS", "FAIL").read(p),
        }[reader]
    )
    path = tmp_path / "f.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")  # a blank line: lines, not records
    with pytest.raises(ChipadaptError, match=rf"f.jsonl:3: {named} repeats line 1"):
        read(path)


# 2. Few-shot MCQ: lm-eval takes the shots from the question's own subject and refuses a request for
# more than there are (its first_n sampler asserts); so does chipadapt, and the run records its shots.


def test_lm_eval_fewshot_with_too_few_shots_of_the_subject_is_refused(tmp_path):
    questions = write_jsonl(tmp_path / "mine.jsonl", [{**MCQ, "subject": "digital"}])
    dev = write_jsonl(tmp_path / "dev.jsonl", [{**MCQ, "subject": "hdl"}] * 5)
    with pytest.raises(ChipadaptError, match=r"eval.mcq.num_fewshot: 5 .*0 of subject 'digital'"):
        mcq_task(questions, fewshot_path=str(dev), num_fewshot=5, preset="lm_eval")
    hdl = write_jsonl(tmp_path / "hdl.jsonl", [MCQ])
    with pytest.raises(ChipadaptError, match=r"eval.mcq.num_fewshot: 100 .*5 of subject 'hdl'"):
        mcq_task(hdl, fewshot_path=str(dev), num_fewshot=100, preset="lm_eval")
    assert mcq_task(hdl, fewshot_path=str(dev), num_fewshot=5, preset="lm_eval").num_fewshot == 5


def test_the_results_say_how_many_shots_each_question_had(tmp_path, monkeypatch):
    import chipadapt.eval.tasks.mcq as mcq_module

    questions = write_jsonl(tmp_path / "q.jsonl", [MCQ, {**MCQ, "question": "Second?"}])
    dev = write_jsonl(tmp_path / "dev.jsonl", [{**MCQ, "question": f"Shot {i}?"} for i in range(3)])
    monkeypatch.setattr(mcq_module, "continuation_logprobs", lambda m, t, pairs, *a, **k: [0.0] * len(pairs))
    for preset in ("chipadapt", "lm_eval"):
        results = mcq_task(questions, fewshot_path=str(dev), num_fewshot=2, preset=preset).run(None, None)
        assert (results["num_fewshot"], results["shots_min"], results["shots_mean"]) == (2, 2, 2.0)
        assert results["style"] == "letters"


# 3. eda_script: how many of the file's scripts are scored, and eval_fraction=null.


def test_eda_script_says_how_many_of_the_files_scripts_it_scores(tmp_path, caplog):
    rows = [{**EDA, "prompt": f"Task {i}", "script": f"x = {i}\nprint(x)"} for i in range(20)]
    path = write_jsonl(tmp_path / "eda.jsonl", rows)
    with caplog.at_level(logging.INFO):
        task = eda_task(path)
    n = len(task.rows())
    assert 0 < n < 20
    assert f"{n} of the 20 scripts" in caplog.text and "eval_fraction=0.2" in caplog.text
    assert task.selection == {"scripts_in_file": 20, "eval_fraction": 0.2}
    every = eda_task(path, eval_fraction=None)  # null: the whole file (a set of the user's own)
    assert len(every.rows()) == 20 and every.selection["eval_fraction"] is None
    for bad in (0, 1.5, "half"):
        with pytest.raises(ChipadaptError, match=r"eval.eda_script.eval_fraction: "):
            eda_task(path, eval_fraction=bad)


# 4. IFEval kwargs, checked when the file is read.


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"relation": "at least", "num_word": 20}, rf"'num_word' is not an argument of '{WORDS}'"),
        ({"relation": "more than", "num_words": 20}, r"relation 'more than' .*'less than', 'at least'"),
        ({"relation": "at least", "num_words": "20"}, r"num_words '20' .*whole number"),
        ({"relation": "at least", "num_words": True}, r"num_words True .*whole number"),
    ],
)
def test_ifeval_kwargs_are_checked_against_the_instructions_arguments(tmp_path, kwargs, message):
    from chipadapt.eval.tasks.ifeval import read_ifeval

    row = {"key": 2, "prompt": "Describe a latch.", "instruction_id_list": [WORDS], "kwargs": [kwargs]}
    path = write_jsonl(tmp_path / "if.jsonl", [IFEVAL, row])
    with pytest.raises(ChipadaptError, match=rf"if.jsonl:2: .*{message}"):
        read_ifeval(path)


def test_ifeval_kwargs_the_checker_itself_rejects_are_refused_and_the_shipped_prompts_pass(tmp_path):
    import random

    from chipadapt.eval.tasks.ifeval import read_ifeval

    repeat = {"key": 3, "prompt": "p", "instruction_id_list": ["combination:repeat_prompt"], "kwargs": [{}]}
    with pytest.raises(ChipadaptError, match=r"if.jsonl:1: .*'combination:repeat_prompt'"):
        read_ifeval(write_jsonl(tmp_path / "if.jsonl", [repeat]))
    nulls = {**IFEVAL, "instruction_id_list": [WORDS], "kwargs": [{"num_words": 5, "relation": None}]}
    assert len(read_ifeval(write_jsonl(tmp_path / "nulls.jsonl", [nulls]))) == 1  # null: the checker's default
    shipped = SHARED_DATA / "ifeval" / "input_data.jsonl"
    if shipped.is_file():
        state = random.getstate()
        assert len(read_ifeval(shipped)) == 541
        assert random.getstate() == state  # checkers that draw defaults leave the caller's random state


# 5. Messages: an empty task list, a BOM, a gzip file, a CSV file.


def test_a_bom_is_read_and_gzip_and_csv_files_are_named_for_what_they_are(tmp_path):
    from chipadapt.io.jsonl import jsonl_records

    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(MCQ).encode() + b"\n")
    assert [r for _, r in jsonl_records(bom)] == [MCQ]
    packed = tmp_path / "m.jsonl.gz"
    packed.write_bytes(gzip.compress(json.dumps(MCQ).encode()))
    with pytest.raises(ChipadaptError, match=r"m.jsonl.gz: gzip-compressed; .*gunzip"):
        list(jsonl_records(packed))
    csv = tmp_path / "m.csv"
    csv.write_text("question,choices,answer\nq,\"['a','b']\",0\n")
    with pytest.raises(ChipadaptError, match=r"m.csv:1: .*CSV.*hf:"):
        list(jsonl_records(csv))


def run_evaluate(args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_an_empty_task_list_is_refused_in_one_line(tmp_path):
    proc = run_evaluate(["model=tiny", "eval=[]", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("chipadapt: error: eval: no task selected")


# 6. The manifest records every task's data.


@pytest.mark.integration
def test_the_manifest_records_each_tasks_input_files(tmp_path):
    mcq = write_jsonl(tmp_path / "mcq.jsonl", [MCQ, {**MCQ, "question": "Second?"}])
    eda = write_jsonl(tmp_path / "eda.jsonl", [{**EDA, "prompt": f"Task {i}", "script": f"x = {i}"} for i in range(4)])
    from helpers.fault_jobs import run_here

    out = tmp_path / "run"
    # evaluate.py's job in this process: the claim is the manifest's content, not the command line's contract.
    overrides = [
        "model=tiny",
        "eval=[mcq,eda_script]",
        f"eval.mcq.path={mcq}",
        f"eval.eda_script.path={eda}",
        "eval.eda_script.eval_fraction=null",
        "eval.eda_script.max_new_tokens=4",
    ]
    run_here("evaluate", overrides, out)
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    assert {"model", "eval.mcq.path", "eval.eda_script.path"} <= set(inputs)
    assert "eval.mcq.fewshot_path" not in inputs  # num_fewshot=0: not read
    assert inputs["eval.mcq.path"]["path"] == str(mcq.resolve()) and len(inputs["eval.mcq.path"]["fingerprint"]) > 8
    results = json.loads((out / "results.json").read_text())
    assert results["eda_script"]["scripts"] == results["eda_script"]["scripts_in_file"] == 4


# 7. Windows longer than the model's context.


def test_mcq_and_perplexity_windows_fit_the_models_context(tmp_path, tiny, caplog):
    from omegaconf import OmegaConf

    from chipadapt.eval.tasks.perplexity import PerplexityTask

    long_question = {**MCQ, "question": " ".join(["Which clock domain crossing scheme is safe?"] * 20)}
    task = mcq_task(write_jsonl(tmp_path / "m.jsonl", [long_question]), max_length=2048)
    with caplog.at_level(logging.WARNING):
        results = task.run(*tiny)
    assert results["max_length"] == 64 and "max_length=2048" in caplog.text
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": "The clock tree is balanced. " * 40}])
    ppl = PerplexityTask(OmegaConf.create({"mine": {"path": str(corpus)}}), 1024, None, None, None, None)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        results = ppl.run(*tiny)
    assert results["max_length"] == 64 and "max_length=1024" in caplog.text
