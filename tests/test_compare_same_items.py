"""compare.py pairs two runs' items only where they are the same items, and shows how sure each figure is:
intervals and n in the main table, error bars on the plots, failed runs marked, unbounded ends kept
unbounded, no "-0.0000", full metric names where no terminal shows the output."""

import csv
import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError

ROOT = Path(__file__).resolve().parents[1]


def _mcq_run(path: Path, answers: list[int], right: list[bool], ids=None, status=None) -> Path:
    from chipadapt.eval.items import summarize

    path.mkdir(parents=True)
    ids = ids or [f"q{i}" for i in range(len(answers))]
    items = [
        {"id": i, "prediction": 0, "reference": a, "scores": {"acc": r}, "subject": "digital", "loglikelihoods": [0, 0]}
        for i, a, r in zip(ids, answers, right)
    ]
    write_jsonl(path / "mcq_items.jsonl", items)
    results = {"mcq": {**summarize(items), "questions": len(items), "baseline_chance": 0.5, "baseline_longest": 0.4}}
    (path / "results.json").write_text(json.dumps(results))
    if status:
        (path / "manifest.json").write_text(json.dumps({"kind": "evaluate", "status": status, "results": {}}))
    return path


def _ppl_run(path: Path, docs: list[tuple[int, int]], rate: float, settings: dict | None = None) -> Path:
    """Perplexity items: (tokens, bytes) per document; `settings`: the task's config in the run's manifest."""
    from chipadapt.eval.items import summarize

    path.mkdir(parents=True)
    if settings is not None:
        config = {"eval": {"perplexity": {"max_length": 512, **settings}}}
        manifest = {"kind": "evaluate", "status": "completed", "results": {}, "config": config}
        (path / "manifest.json").write_text(json.dumps(manifest))
    items = [
        {
            "id": f"domain/d{i}",
            "split": "domain",
            "tokens": t,
            "bytes": b,
            "scores": {
                "domain.ppl": {"num": rate * t * (1 + i / 50), "den": t, "transform": "exp"},
                "domain.bpb": {"num": rate * b * (1 + i / 50), "den": b},
            },
        }
        for i, (t, b) in enumerate(docs)
    ]
    write_jsonl(path / "perplexity_items.jsonl", items)
    (path / "results.json").write_text(json.dumps({"perplexity": summarize(items)}))
    return path


def _cfg(tmp_path: Path, runs: list[Path], labels: list[str]):
    return OmegaConf.create(
        {
            "runs": [str(r) for r in runs],
            "labels": labels,
            "metrics": None,
            "x": None,
            "output": str(tmp_path / "cmp"),
            "overwrite": False,
            "paths": {"output_dir": str(tmp_path / "cmp")},
            "max_plot_metrics": 9,
        }
    )


def _not_paired(rows: list[dict]) -> dict[tuple[str, str], str]:
    return {(r["run"], r["metric"]): r["reason"] for r in rows if r["verdict"] == "not paired"}


def test_mcq_files_with_the_same_ids_but_other_questions_are_not_paired(tmp_path):
    from chipadapt.eval.paired_compare import paired_rows

    a = _mcq_run(tmp_path / "a", [0, 2, 1, 3, 0, 1], [True, False, True, False, True, True])
    b = _mcq_run(tmp_path / "b", [1, 2, 3, 0, 1, 0], [False, False, True, True, False, True])
    rows = paired_rows([("a", a), ("b", b)])
    assert len(rows) == 1 and rows[0]["test"] == "not paired"
    reason = _not_paired(rows)[("b", "mcq")]
    assert re.match(r"5 of 6 items .*differ.*first: 'q0', reference", reason) and "\n" not in reason


def test_a_truncated_perplexity_run_is_not_paired_with_the_full_documents(tmp_path):
    from chipadapt.eval.paired_compare import paired_rows

    full = _ppl_run(tmp_path / "full", [(596, 1800), (400, 1200), (500, 1500), (300, 900)], 1.0)
    cut = _ppl_run(tmp_path / "cut", [(64, 190), (64, 200), (64, 180), (64, 170)], 0.9)
    reason = _not_paired(paired_rows([("full", full), ("cut", cut)]))[("cut", "perplexity")]
    assert re.match(r"4 of 4 items .*first: 'domain/d0', bytes", reason)


def _add_mcq(folder: Path, questions: list[str]) -> None:
    """MCQ items beside a perplexity run's, numbered q0, q1, ... whatever the questions are."""
    from chipadapt.eval.items import summarize

    items = [
        {"id": f"q{i}", "question": q, "reference": 0, "prediction": i % 2, "scores": {"acc": i % 2 == 0}}
        for i, q in enumerate(questions)
    ]
    write_jsonl(folder / "mcq_items.jsonl", items)
    results = json.loads((folder / "results.json").read_text())
    (folder / "results.json").write_text(json.dumps({**results, "mcq": summarize(items)}))


def test_a_task_not_asked_about_is_not_read_and_other_items_leave_the_tables_and_other_tasks(tmp_path, caplog):
    from chipadapt.eval.compare import compare
    from chipadapt.eval.paired_compare import paired_rows

    docs = [(300 + i, 900 + 3 * i) for i in range(20)]
    a, b = _ppl_run(tmp_path / "a", docs, 1.0), _ppl_run(tmp_path / "b", docs, 0.9)
    _add_mcq(a, [f"Which gate is number {i}?" for i in range(20)])
    _add_mcq(b, [f"Which flop is number {i}?" for i in range(20)])
    rows = paired_rows([("A", a), ("B", b)], ["perplexity.domain.bpb"])
    assert [(r["metric"], r["n"], r["verdict"]) for r in rows] == [("perplexity.domain.bpb", 20, "lower")]

    caplog.set_level(logging.WARNING)
    summary = compare(_cfg(tmp_path, [a, b], ["A", "B"]))
    out = tmp_path / "cmp"
    assert "mcq.acc" in (out / "compare.md").read_text() and (out / "compare.csv").is_file()
    assert Path(summary["plot"]).is_file()
    by = {r["metric"]: r for r in summary["paired"]}
    assert by["perplexity.domain.bpb"]["n"] == 20 and by["mcq"]["verdict"] == "not paired"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "mcq" in warnings[0] and "not paired" in warnings[0]
    md = (out / "compare_paired.md").read_text()
    assert re.search(r"mcq of B: not paired with A: .*20 of 20 items .*first: 'q0', question", md)
    table = {r["metric"]: r for r in csv.DictReader((out / "compare_paired.csv").open())}
    assert table["mcq"]["test"] == "not paired" and "'q0', question" in table["mcq"]["reason"]
    assert table["perplexity.domain.bpb"]["reason"] == ""


def test_runs_whose_perplexity_limits_differ_are_not_paired_but_the_same_limits_pair(tmp_path):
    """A character limit against a token limit cuts the long documents (3 of 10 here: left out by
    length, a verdict from the short ones); a budget that cut one document in one run leaves it out."""
    from chipadapt.eval.paired_compare import paired_rows

    docs = [(100 + 40 * i, 300 + 130 * i) for i in range(10)]
    tokens = {"max_tokens": 12288, "max_tokens_per_document": 1024}  # written before max_chars existed
    chars = {"max_tokens": 12288, "max_tokens_per_document": None, "max_chars_per_document": 1200}
    a = _ppl_run(tmp_path / "a", docs, 1.0, tokens)
    b = _ppl_run(tmp_path / "b", [(t, min(b, 1200)) for t, b in docs], 0.9, chars)
    rows = paired_rows([("A", a), ("B", b)])
    assert [r["verdict"] for r in rows] == ["not paired"]
    assert re.search(r"max_tokens_per_document 1024 vs None", rows[0]["reason"])

    same = _ppl_run(tmp_path / "same", [*docs[:-1], (100, 300)], 0.9, {**tokens, "max_chars_per_document": None})
    rows = paired_rows([("A", a), ("same", same)])
    assert {(r["n"], r["left_out"]) for r in rows} == {(9, 1)}


def test_an_items_file_of_an_older_version_with_a_repeated_id_says_to_evaluate_again(tmp_path):
    from chipadapt.eval.items import read_items

    path = write_jsonl(tmp_path / "mcq_items.jsonl", [{"id": "same", "scores": {"acc": i % 2 == 0}} for i in range(6)])
    with pytest.raises(
        ChipadaptError,
        match=r"mcq_items.jsonl:2: id 'same' repeats line 1.*written before repeated questions were numbered.*"
        r"names an id twice.*evaluate again with this version",
    ):
        read_items(path)


def test_documents_that_differ_are_left_out_and_counted_and_another_tokenizer_still_pairs(tmp_path, capsys):
    from chipadapt.eval.paired_compare import write_paired

    docs = [(300 + i, 900 + 3 * i) for i in range(20)]
    base = _ppl_run(tmp_path / "base", docs, 1.0)
    # Another tokenizer: other token counts, and a first (unscored) token a few bytes longer or shorter.
    other_tok = _ppl_run(tmp_path / "tok", [(t - 40, b + 3) for t, b in docs], 0.9)
    # The token budget cut the last document short.
    budget = _ppl_run(tmp_path / "budget", [*docs[:-1], (100, 300)], 0.9)
    out = tmp_path / "cmp"
    out.mkdir()
    rows = write_paired([("base", base), ("tok", other_tok), ("budget", budget)], None, out)
    by = {(r["run"], r["metric"]): r for r in rows}
    assert by[("tok", "perplexity.domain.bpb")]["n"] == 20 and by[("tok", "perplexity.domain.bpb")]["left_out"] == 0
    assert by[("budget", "perplexity.domain.bpb")]["n"] == 19
    assert by[("budget", "perplexity.domain.bpb")]["left_out"] == 1
    text = (out / "compare_paired.md").read_text()
    assert "1 item of budget left out" in text and "domain/d19" in text


def test_an_unbounded_end_stays_unbounded_through_the_exp_transform():
    from chipadapt.eval.paired import paired_difference

    def docs(rates):
        return {
            f"d{i}": {"scores": {"ppl": {"num": r * 100, "den": 100, "transform": "exp"}}} for i, r in enumerate(rates)
        }

    d = paired_difference(docs([6.2, 6.3, 6.1, 6.4]), docs([6.0, 6.1, 5.9, 6.2]), "ppl")
    assert d.ci == (-math.inf, math.inf)  # was (-509.3, inf): exp(-inf) - exp(a) is not a bound the test gave


def test_differences_print_without_negative_zero_and_with_the_digits_a_tiny_one_needs():
    from chipadapt.eval.paired_compare import interval_text

    assert interval_text(0.0, -0.0, -0.0) == "+0.0000 [+0.0000, +0.0000]"
    assert interval_text(-0.00001234, -0.00002, -0.000003) == "-0.0000123 [-0.0000200, -0.0000030]"
    assert interval_text(-1e-9, -1e-9, 0.0) == "-0.0000000010 [-0.0000000010, +0.0000000000]"
    assert interval_text(-0.5, -0.81, 0.09) == "-0.5000 [-0.8100, +0.0900]"
    assert interval_text(-1.2, -math.inf, 0.5) == "-1.2000 [-inf, +0.5000]"  # one end unbounded: shown so
    # Both ends unbounded (the exact test over 5 items or fewer): said in words, with n, not as [-inf, +inf].
    assert interval_text(-1.2, -math.inf, math.inf, 4) == "-1.2000 (interval n/a: n=4, too few)"


def test_the_main_table_carries_intervals_and_n_marks_failed_runs_and_skips_settings(tmp_path):
    from chipadapt.eval.compare import compare

    small = _mcq_run(tmp_path / "small", [0] * 10, [True] * 3 + [False] * 7, ids=[f"a{i}" for i in range(10)])
    big = _mcq_run(tmp_path / "big", [0] * 58, [True] * 14 + [False] * 44, ids=[f"b{i}" for i in range(58)])
    failed = _mcq_run(tmp_path / "failed", [0], [True], ids=["c0"], status="failed")
    summary = compare(_cfg(tmp_path, [small, big, failed], ["small", "big", "broken"]))
    assert summary["metrics"] == ["mcq.acc"]  # baseline_chance and baseline_longest are not the run's metrics
    md = (tmp_path / "cmp" / "compare.md").read_text().splitlines()
    assert md[0] == "| run | mcq.acc |"
    assert md[2].startswith("| small | 0.3 [0.06") and md[2].endswith("n=10 |")
    assert md[3].startswith("| big | 0.2414 [0.1") and md[3].endswith("n=58 |")
    assert md[4].startswith("| broken (failed) |")
    rows = list(csv.DictReader((tmp_path / "cmp" / "compare.csv").open()))
    assert rows[0]["mcq.acc_n"] == "10" and 0.06 < float(rows[0]["mcq.acc_ci95_lo"]) < 0.07
    assert float(rows[1]["mcq.acc_ci95_hi"]) > 0.24 and rows[2]["status"] == "failed"


def test_settings_and_baselines_are_not_metrics():
    from chipadapt.run_metrics import evaluation_metrics

    metrics = evaluation_metrics(
        {
            "mcq": {"acc": 0.3, "baseline_chance": 0.25, "baseline_longest": 0.4, "questions": 10},
            "ifeval": {"prompt_loose": 0.5, "max_new_tokens": 16, "num_fewshot": 5},
            "retrieval": {"bm25": {"hit@1": 0.6, "ms_per_query": 0.3}},
        }
    )
    assert set(metrics) == {"mcq.acc", "ifeval.prompt_loose", "retrieval.bm25.hit@1", "retrieval.bm25.ms_per_query"}


def test_the_plots_have_error_bars_where_runs_carry_intervals(tmp_path, monkeypatch):
    from chipadapt.eval import compare_plots
    from chipadapt.eval.compare_runs import Run

    figures = []
    monkeypatch.setattr(compare_plots, "_save", lambda fig, plt, path: figures.append(fig) or path)
    runs = [
        Run(Path(f"/r/{i}"), "evaluate", "completed", {"merge.lam": str(lam)}, {"mcq.acc": v}, label=str(lam))
        for i, (lam, v) in enumerate([(0.0, 0.3), (0.5, 0.4), (1.0, 0.35)])
    ]
    for run in runs:
        run.uncertainty = {"mcq.acc": {"ci": [run.metrics["mcq.acc"] - 0.1, run.metrics["mcq.acc"] + 0.1], "n": 10}}
    compare_plots.metric_plot(runs, ["mcq.acc"], "merge.lam", tmp_path)
    compare_plots.metric_plot(runs, ["mcq.acc"], None, tmp_path)
    from matplotlib.container import BarContainer, ErrorbarContainer

    curve, bars = (fig.axes[0] for fig in figures)
    assert any(isinstance(c, ErrorbarContainer) for c in curve.containers)
    bar = next(c for c in bars.containers if isinstance(c, BarContainer))
    assert bar.errorbar is not None


def test_a_table_printed_where_no_terminal_shows_it_keeps_whole_metric_names():
    code = (
        "from rich.table import Table\n"
        "from chipadapt.report import console\n"
        "t = Table()\nt.add_column('task')\nt.add_column('metric')\nt.add_column('value')\n"
        "for k in ('hit@1', 'hit@5', 'recall@1', 'mrr@10'):\n"
        "    name = 'bm25.by_type.parameter.' + k + '_with_a_longer_name_than_eighty_columns_allow'\n"
        "    t.add_row('retrieval', name, '0.5')\n"
        "console.print(t)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "bm25.by_type.parameter.mrr@10_with_a_longer_name_than_eighty_columns_allow" in proc.stdout


def test_mcq_runs_of_other_questions_under_the_same_ids_are_refused_even_with_equal_answers(tmp_path):
    """Two MCQ files numbered q0, q1 whose answers happen to agree: only the question tells them apart."""
    from helpers.models import tiny_llama
    from test_eval_inputs_trial import mcq_task
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chipadapt.eval.same_items import same_items

    folder = tiny_llama(tmp_path / "cache")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    runs = []
    for name, words in (("a", ["module", "wire"]), ("b", ["clock", "reset"])):
        rows = [
            {"id": f"q{i}", "question": f"Which keyword is {word}?", "choices": [word, "banana"], "answer": 0}
            for i, word in enumerate(words)
        ]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        task = mcq_task(path)
        task.run(model, tokenizer)
        runs.append({item["id"]: item for item in task.items})
    assert [item["reference"] for item in runs[0].values()] == [item["reference"] for item in runs[1].values()]
    with pytest.raises(ChipadaptError, match=r"mcq: 2 of 2 items .* \(first: 'q0', content"):
        same_items("mcq", "a", "b", runs[0], runs[1])
