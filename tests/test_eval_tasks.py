"""The generation tasks of evaluate.py: verilog, eda_script, bug_summary; the domain MCQ set; lm-eval."""

import json
import math
import shutil

import pytest
from conftest import ROOT, SHARED_DATA, write_jsonl
from helpers.models import tiny_llama

HAS_IVERILOG = shutil.which("iverilog") is not None and shutil.which("vvp") is not None
needs_iverilog = pytest.mark.skipif(not HAS_IVERILOG, reason="iverilog not installed (apt-get install -y iverilog)")

TB = """`timescale 1 ps/1 ps
module tb();
  reg [3:0] a, b; wire [3:0] y_ref, y_dut; integer errors = 0, samples = 0, i;
  RefModule r(.a(a), .b(b), .y(y_ref));
  TopModule d(.a(a), .b(b), .y(y_dut));
  initial begin
    for (i = 0; i < 64; i = i + 1) begin
      a = $random; b = $random; #1;
      samples = samples + 1; if (y_ref !== y_dut) errors = errors + 1;
    end
    $display("Mismatches: %1d in %1d samples", errors, samples);
    $finish;
  end
endmodule
"""
REF = "module RefModule(input [3:0] a, input [3:0] b, output [3:0] y);\n  assign y = a & b;\nendmodule\n"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    return load_causal_lm(tiny_folder, "float32", "sdpa").eval(), load_tokenizer(tiny_folder)


def test_module_extraction_from_chat_replies_and_completions():
    from chipadapt.eval.verilog.extract import extract_module

    reply = (
        "Sure! Here it is:\n```verilog\nmodule TopModule(input a, output y);\n  assign y = ~a;\nendmodule\n```\n"
        "Hope it helps."
    )
    assert extract_module(reply).startswith("module TopModule") and extract_module(reply).strip().endswith("endmodule")
    completed = extract_module(
        "  assign y = ~a;\nendmodule\nmodule Extra; endmodule", prompt_header="module TopModule(input a, output y);"
    )
    assert completed.count("endmodule") == 1 and "assign y = ~a;" in completed


@needs_iverilog
def test_simulation_passes_a_correct_module_and_fails_wrong_or_broken_ones():
    from chipadapt.eval.verilog.simulate import simulate

    good = simulate(REF.replace("RefModule", "TopModule"), REF, TB, 20)
    wrong = simulate(REF.replace("RefModule", "TopModule").replace("a & b", "a | b"), REF, TB, 20)
    broken = simulate("module TopModule(input [3:0] a; endmodule", REF, TB, 20)
    assert good.passed and good.detail.startswith("0 mismatches")
    assert not wrong.passed and wrong.stage == "ok"
    assert not broken.passed and broken.stage == "compile"


def test_pass_at_k_is_the_unbiased_estimator():
    from chipadapt.eval.tasks.verilog import pass_at_k

    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - 6 / 10)  # 1 - C(4,2)/C(5,2)


@needs_iverilog
def test_verilog_task_runs_a_model_end_to_end(tmp_path, tiny):
    from chipadapt.eval.tasks.verilog import VerilogTask
    from chipadapt.eval.verilog.verilogeval import VerilogEvalShape

    tasks = write_jsonl(
        tmp_path / "v.jsonl",
        [
            {
                "task_id": "and4",
                "prompt": "Implement y = a & b.\nmodule TopModule(input [3:0] a, input [3:0] b, output [3:0] y);\n",
                "ref": REF,
                "test": TB,
            }
        ],
    )
    task = VerilogTask(str(tasks), "completion", None, 8, 1, 1, 0.0, 1.0, [1], 20, 1, False, VerilogEvalShape())
    results = task.run(*tiny)
    assert results["tasks"] == 1 and results["pass@1"] in (0.0, 1.0) and results["pass@1_n"] == 1
    [item] = task.items
    assert item["id"] == "and4" and item["prediction"][0].startswith("module TopModule(input [3:0] a")
    assert item["scores"]["pass@1"] is (results["pass@1"] == 1.0)  # one sample: pass/fail, an exact binomial interval


@pytest.mark.slow
@needs_iverilog
def test_verilogeval_references_pass_their_known_153_of_156(tmp_path):
    path = SHARED_DATA / "verilog_eval" / "verilog_eval_v2_spec-to-rtl.jsonl"
    if not path.is_file():
        pytest.skip("shared data not present")
    from chipadapt.eval.tasks.verilog import VerilogTask
    from chipadapt.eval.verilog.verilogeval import VerilogEvalShape

    task = VerilogTask(str(path), "chat", None, 1, 1, 1, 0.0, 1.0, [1], 60, 2, True, VerilogEvalShape())
    results = task.run()
    assert results["tasks"] == 156 and results["passed_tasks"] == 153  # Prob099, 151, 156 fail under iverilog 11
    failing = {item["id"] for item in task.items if not item["scores"]["pass@1"]}
    assert failing == {"Prob099_m2014_q6c", "Prob151_review2015_fsm", "Prob156_review2015_fancytimer"}


def test_eda_script_metrics_reward_the_reference_calls():
    from chipadapt.eval.tasks.eda_script import score_scripts

    ref = "block = ord.get_db_block()\ninst = block.findInst('input2')\ninst.setLocation(22500, 33459)\n"
    same_calls = "b = ord.get_db_block()\ni = b.findInst('input2')\ni.setLocation(22500, 33459)"
    wrong_args = "b = ord.get_db_block()\ni = b.findInst('other')\ni.setLocation(1, 2)"
    missing = "b = ord.get_db_block()\nprint(b)"
    broken = "def f(:\n  pass"
    scores = [score_scripts([p], [ref]) for p in (same_calls, wrong_args, missing, broken)]
    assert scores[0]["all_calls"] == 1.0 and scores[0]["arg_f1"] == 1.0 and scores[0]["syntax"] == 1.0
    assert scores[1]["all_calls"] == 1.0 and scores[1]["arg_f1"] < 1.0
    assert scores[2]["all_calls"] == 0.0 and 0 < scores[2]["call_recall"] < 1
    assert scores[3]["syntax"] == 0.0 and scores[3]["all_calls"] == 0.0
    assert score_scripts(["x = 1"], ["def f(:\n pass"])["unparseable_references"] == 1


def test_eda_split_is_fixed_by_the_script_and_covers_paraphrases():
    from chipadapt.data.eda_split import is_eval_row

    script = "block = ord.get_db_block()\n# find it\ninst = block.findInst('a')\n"
    variants = [script, script.replace("# find it", "# another comment"), script + "\n\n"]
    assert len({is_eval_row(v, 0.5) for v in variants}) == 1
    rows = [f"x = {i}" for i in range(400)]
    share = sum(is_eval_row(r, 0.2) for r in rows) / len(rows)
    assert 0.12 < share < 0.28


def rouge_l():
    from chipadapt.eval.rouge import RougeL

    return RougeL(use_stemmer=True)


def test_rouge_l_is_rouge_score_with_stemming_and_says_so():
    scorer = rouge_l()
    assert scorer.score("the routers assigned nets", "the router assigns nets") == pytest.approx(1.0)  # stems agree
    assert scorer.score("banana", "the router assigns nets") == 0.0
    from chipadapt.eval.rouge import RougeL

    assert RougeL(use_stemmer=False).score("the routers assigned nets", "the router assigns nets") == pytest.approx(0.5)
    assert "rouge_score==0.1.2" in scorer.describe() and "use_stemmer=True" in scorer.describe()


def test_eda_script_task_on_shared_data_uses_only_the_eval_split(tmp_path, tiny):
    path = SHARED_DATA / "eda_scripts" / "eda_corpus_ps_nonaug.jsonl"
    if not path.is_file():
        pytest.skip("shared data not present")
    from chipadapt.data.eda_split import is_eval_row
    from chipadapt.eval.tasks.eda_script import EDAScriptTask

    task = EDAScriptTask(str(path), 0.2, ["db"], 3, 8, 3, rouge_l())
    assert all(is_eval_row(r["script"], 0.2) and r["category"] == "db" for r in task.rows())
    results = task.run(*tiny)
    assert results["scripts"] == 3 and 0 <= results["syntax"] <= 1 and "all_calls.db" in results
    assert len(task.items) == 3 and len({i["id"] for i in task.items}) == 3 and results["syntax_n"] == 3
    assert results["rougeL"] == pytest.approx(sum(i["scores"]["rougeL"] for i in task.items) / 3)
    assert "use_stemmer=True" in results["rougeL_scorer"]


def test_long_threads_are_condensed_hierarchically(tmp_path, tiny):
    from chipadapt.eval.tasks.bug_summary import BugSummaryTask, split_to_fit

    model, tok = tiny
    long_thread = "\n\n".join(
        f"[engineer {i}] The clock gate on block {i} glitches when the enable toggles near the edge." for i in range(40)
    )
    pieces = split_to_fit(long_thread, tok, 120)
    assert len(pieces) > 1 and all(len(tok(p, add_special_tokens=False).input_ids) <= 120 for p in pieces)
    assert "".join(pieces).replace("\n", "") == long_thread.replace("\n", "")  # cut, nothing lost
    threads = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {"id": "long", "thread": long_thread, "technical": "clock gate glitch"},
            {"id": "short", "thread": "[a] Fixed the reset.", "managerial": "fixed"},
        ],
    )
    task = BugSummaryTask(str(threads), "thread", None, 200, 8, 2, None, rouge_l())
    results = task.run(model, tok)
    assert results["threads"] == 2 and results["hierarchical"] == 1
    assert "technical.rougeL" in results and "managerial.rougeL" in results and "assignment.rougeL" not in results
    assert results["technical.rougeL_n"] == 1  # scored only against the references a thread has
    rows = task.items
    assert [r["id"] for r in rows] == ["long", "short"] and set(rows[0]["prediction"]) == {
        "technical",
        "managerial",
        "assignment",
    }
    assert rows[0]["condensing_rounds"] >= 1 and rows[1]["condensing_rounds"] == 0


def test_likert_judge_gives_a_rating_between_1_and_7(tmp_path, tiny, tiny_folder):
    from chipadapt.eval.tasks.bug_summary import BugSummaryTask

    threads = write_jsonl(
        tmp_path / "t.jsonl", [{"id": "a", "thread": "[a] The FIFO overflowed; fixed the full flag."}]
    )
    results = BugSummaryTask(str(threads), "thread", None, 500, 4, 1, {"model_path": str(tiny_folder)}, rouge_l()).run(
        *tiny
    )
    for kind in ("technical", "managerial", "assignment"):
        assert 1.0 <= results[f"{kind}.likert"] <= 7.0


def test_shipped_domain_sets_are_well_formed():
    mcq = [
        json.loads(row)
        for row in (ROOT / "src/chipadapt/resources/domain_mcq/chip_design_mcq.jsonl").read_text().splitlines()
    ]
    assert len(mcq) >= 50 and len({q["question"] for q in mcq}) == len(mcq)
    assert all(len(q["choices"]) == 4 and 0 <= q["answer"] < 4 and len(set(q["choices"])) == 4 for q in mcq)
    answers = [q["answer"] for q in mcq]
    assert max(answers.count(i) for i in range(4)) < 0.3 * len(mcq)  # the right letter is not guessable
    # nor is the right length: picking the longest (or, mirrored, the shortest) choice stays well below half
    from chipadapt.eval.mcq_baselines import longest_choice_baseline

    assert longest_choice_baseline(mcq) <= 0.35
    mirrored = [{"choices": ["x" * (1000 - len(c)) for c in q["choices"]], "answer": q["answer"]} for q in mcq]
    assert longest_choice_baseline(mirrored) <= 0.35
    bugs = [
        json.loads(row) for row in (ROOT / "src/chipadapt/resources/bug_summary/threads.jsonl").read_text().splitlines()
    ]
    assert len(bugs) >= 5 and all({"thread", "technical", "managerial", "assignment"} <= set(b) for b in bugs)


def test_a_model_folder_trained_here_is_scored_the_same_by_lm_eval_hflm(tiny_folder, tiny):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from chipadapt.eval.scoring import continuation_logprobs

    pairs = [("The clock tree", " is balanced"), ("module TopModule", "(input a);")]
    lm = HFLM(pretrained=str(tiny_folder), device="cpu", batch_size=2)
    requests = [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]
    theirs = [logprob for logprob, _ in lm.loglikelihood(requests)]
    ours = continuation_logprobs(*tiny, pairs, batch_size=2, max_length=512)
    assert lm_eval.__version__ and theirs == pytest.approx(ours, abs=1e-3)


@pytest.mark.integration
def test_compare_writes_one_table_and_a_lambda_curve(tmp_path):
    import subprocess
    import sys

    for lam, acc, ifeval in [(0.0, 0.30, 0.40), (0.6, 0.35, 0.33), (1.0, 0.45, 0.20)]:
        run = tmp_path / "sweep" / str(lam)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- merge.lam={lam}\n- hydra.job.chdir=false\n")
        (run / "results.json").write_text(
            json.dumps({"mcq": {"acc": acc, "questions": 10}, "ifeval": {"prompt_loose": ifeval}})
        )
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), f"runs=[{tmp_path}/sweep/*]", f"hydra.run.dir={out}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = (out / "compare.md").read_text().splitlines()
    assert table[0] == "| run | ifeval.prompt_loose | mcq.acc |"  # counts such as `questions` are not metrics
    assert table[2].startswith("| merge.lam=0.0 |") and table[-1].startswith("| merge.lam=1.0 | 0.2 | 0.45")
    assert (out / "compare_curve.png").stat().st_size > 1000
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "compare.py"),
            f"runs=[{tmp_path}/sweep/*]",
            "metrics=[mcq.nope]",
            f"hydra.run.dir={tmp_path / 'bad'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2 and "compare.metrics: 'mcq.nope' is in no results file" in proc.stderr


def test_perplexity_scores_only_held_out_documents_caps_tokens_and_means_the_domain_splits(tmp_path, tiny):
    from chipadapt.data.holdout import held_out_mask as held_out
    from chipadapt.eval.tasks.perplexity import PerplexityTask

    model, tokenizer = tiny
    docs = [
        {
            "text": f"module m{i}(input a, output y); assign y = a ^ {i % 2}; endmodule // design {i}",
            "path": f"rtl/m{i}.v",
        }
        for i in range(60)
    ]
    corpus = write_jsonl(tmp_path / "rtl.jsonl", docs)
    prose = write_jsonl(
        tmp_path / "prose.jsonl", [{"text": "The river runs past the old mill and into the town square."}] * 3
    )
    from omegaconf import OmegaConf

    splits = OmegaConf.create(
        {
            "rtl": {"path": str(corpus), "held_out": 0.2},
            "rtl_again": {"path": str(corpus), "held_out": 0.2},
            "prose": {"path": str(prose), "general": True},
        }
    )
    task = PerplexityTask(
        splits,
        max_length=64,
        max_documents=None,
        max_tokens=None,
        max_tokens_per_document=None,
        max_chars_per_document=None,
    )
    expected = [d["path"] for d, keep in zip(docs, held_out([d["path"] for d in docs], 0.2)) if keep]
    assert [d.doc_id for d in task.documents("rtl")] == expected and 0 < len(expected) < 60
    results = task.run(model, tokenizer)
    assert results["rtl.documents"] == len(expected)
    # Items are documents: the interval resamples them, and their sums give the split's figures back.
    rtl = [i for i in task.items if i["id"].startswith("rtl/")]
    assert len(rtl) == results["rtl.bpb_n"] == len(expected) and sum(i["tokens"] for i in rtl) == results["rtl.tokens"]
    assert results["rtl.ppl"] == pytest.approx(
        math.exp(sum(i["scores"]["rtl.ppl"]["num"] for i in rtl) / results["rtl.tokens"])
    )
    assert results["rtl.bpb_ci"][0] <= results["rtl.bpb"] <= results["rtl.bpb_ci"][1]
    assert results["domain_mean.bpb"] == pytest.approx(
        (results["rtl.bpb"] + results["rtl_again.bpb"]) / 2
    )  # prose is general
    # domain_all.bpb pools the documents of every domain split (prose left out): bytes and bits summed.
    domain = [i for i in task.items if i["split"] != "prose"]
    assert results["domain_all.bpb_n"] == len(domain) == 2 * len(expected)
    assert results["domain_all.bpb"] == pytest.approx(
        sum(i["scores"]["domain_all.bpb"]["num"] for i in domain) / sum(i["bytes"] for i in domain)
    )
    assert all("domain_all.bpb" not in i["scores"] for i in task.items if i["split"] == "prose")
    capped = PerplexityTask(
        splits,
        max_length=64,
        max_documents=None,
        max_tokens=30,
        max_tokens_per_document=None,
        max_chars_per_document=None,
    )
    capped = capped.run(model, tokenizer)
    assert capped["rtl.documents"] < len(expected) and 30 <= capped["rtl.tokens"] < results["rtl.tokens"]
    # A cap per document spreads the same budget over more documents.
    spreading = PerplexityTask(
        splits, max_length=64, max_documents=None, max_tokens=30, max_tokens_per_document=8, max_chars_per_document=None
    )
    spread = spreading.run(model, tokenizer)
    assert spread["rtl.documents"] > capped["rtl.documents"]
    assert max(i["tokens"] for i in spreading.items) == 8
    # A cap in characters scores the same text whatever the tokenizer: every document's bytes at most the cap.
    cut = PerplexityTask(
        splits,
        max_length=64,
        max_documents=None,
        max_tokens=None,
        max_tokens_per_document=None,
        max_chars_per_document=40,
    )
    cut.run(model, tokenizer)
    whole = {i["id"]: i for i in task.items}
    assert all(i["bytes"] <= 40 and i["bytes"] < whole[i["id"]]["bytes"] for i in cut.items if i["split"] == "rtl")


def test_mcq_max_per_subject_spans_every_subject_before_the_limit():
    from chipadapt.eval.tasks.mcq import first_per_subject

    rows = [{"subject": s, "question": f"{s}{i}"} for s in ("anatomy", "law", "physics") for i in range(4)]
    kept = first_per_subject(rows, 2)
    assert [r["question"] for r in kept] == ["anatomy0", "anatomy1", "law0", "law1", "physics0", "physics1"]
    assert len(first_per_subject([{"question": "x"}] * 3, 1)) == 1  # rows without a subject form one group
