"""How paired differences are shown: a McNemar row whose p, interval and verdict agree and that names the
discordant counts; an honest interval where item differences have no spread; the paired plot; labels
short enough to read."""

import json
from pathlib import Path

import pytest
from conftest import write_jsonl
from omegaconf import OmegaConf

from chipadapt.eval.compare import compare
from chipadapt.eval.compare_plots import _wrap, plot_labels
from chipadapt.eval.compare_runs import Run, label_runs
from chipadapt.eval.items import summarize
from chipadapt.eval.paired import paired_difference


def _folder(path: Path, acc: list[bool], instructions: list[tuple[int, int]], bpb: list[float]) -> Path:
    path.mkdir(parents=True)
    mcq = [{"id": f"q{i}", "prediction": None, "reference": None, "scores": {"acc": v}} for i, v in enumerate(acc)]
    ifeval = [
        {"id": f"p{i}", "prediction": None, "reference": None, "scores": {"instruction_strict": {"num": k, "den": n}}}
        for i, (k, n) in enumerate(instructions)
    ]
    ppl = [
        {"id": f"d{i}", "prediction": None, "reference": None, "scores": {"bpb": {"num": v * 100, "den": 100}}}
        for i, v in enumerate(bpb)
    ]
    results = {}
    for task, items in (("mcq", mcq), ("ifeval", ifeval), ("perplexity", ppl)):
        write_jsonl(path / f"{task}_items.jsonl", items)
        results[task] = summarize(items)
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_five_discordant_items_all_one_way_read_within_noise_with_the_exact_p_and_the_counts(tmp_path):
    base_acc = [False] * 40
    # five gained, none lost (the trial's 5-0 row: score p 0.025 beside "within noise"); then seven against one
    five = [True] * 5 + [False] * 35
    seven_one = [True] * 7 + [False] * 32 + [False]
    base_for_seven = [False] * 39 + [True]
    inst = [(1, 2)] * 8
    docs = [1.8 + 0.01 * i for i in range(20)]
    base = _folder(tmp_path / "base", base_acc, inst, docs)
    gained = _folder(tmp_path / "five", five, inst, [d - 0.05 for d in docs])
    base2 = _folder(tmp_path / "base2", base_for_seven, inst, docs)
    mixed = _folder(tmp_path / "seven", seven_one, inst, docs)
    out = tmp_path / "cmp"
    cfg = OmegaConf.create(
        {
            "runs": [str(base), str(gained)],
            "labels": ["base", "five"],
            "metrics": None,
            "x": None,
            "output": str(out),
            "overwrite": False,
            "paths": {"output_dir": str(out)},
            "max_plot_metrics": 4,
        }
    )
    summary = compare(cfg)
    row = next(r for r in summary["paired"] if r["metric"] == "mcq.acc")
    assert (row["first_only"], row["this_only"]) == (0, 5) and row["p_method"] == "exact binomial"
    assert row["p"] == pytest.approx(0.0625) and row["ci95_lo"] > 0 and row["verdict"] == "within noise"
    assert "exact McNemar" in row["note"]
    md = (out / "compare_paired.md").read_text()
    line = next(x for x in md.splitlines() if "| mcq.acc |" in x)
    assert "| 0 / 5 |" in line and "0.0625 (exact)" in line and "within noise [1]" in line
    assert "\n[1] mcq.acc of five: within noise by the exact McNemar test" in md
    csv_header = (out / "compare_paired.csv").read_text().splitlines()[0]
    assert csv_header.endswith("first_only,this_only,p_method,note")
    # the paired plot is written beside the bars (bits per byte: 20 documents all 0.05 lower)
    assert (out / "compare_paired.png").stat().st_size > 0 and summary["plots"]["paired"].endswith("compare_paired.png")
    bpb = next(r for r in summary["paired"] if r["metric"] == "perplexity.bpb")
    # no McNemar note; every document 0.05 lower: the point interval is marked as no spread, not certainty
    assert bpb["verdict"] == "lower" and bpb["note"].startswith("every one of the 20 items differs by -0.05")
    # seven against one: exact p 0.070, not the score test's 0.034 beside "higher"
    d = paired_difference(*(_items(f / "mcq_items.jsonl") for f in (base2, mixed)), "acc")
    assert d.p == pytest.approx(18 / 256) and d.ci[0] > 0 and d.verdict == "within noise" and d.note


def _items(path: Path) -> dict:
    from chipadapt.eval.items import read_items

    return read_items(path)


def test_instruction_counts_equal_on_every_prompt_get_an_interval_with_width_not_a_point():
    # The trial's row: ifeval.instruction_strict +0.0000 [+0.0000, +0.0000] over 8 prompts.
    counts = [(0, 1), (1, 2), (2, 3), (0, 2), (1, 1), (0, 3), (1, 1), (0, 1)]
    a = {f"p{i}": {"scores": {"inst": {"num": k, "den": n}}} for i, (k, n) in enumerate(counts)}
    d = paired_difference(a, a, "inst")
    z2 = 1.959964**2
    total = sum(n for _, n in counts)  # 14 instructions, taken as McNemar items with none discordant
    assert d.test == "tango-over-parts" and d.diff == 0 and d.p == 1 and d.verdict == "within noise"
    assert d.ci == pytest.approx((-z2 / (total + z2), z2 / (total + z2)), abs=1e-4) and d.ci[1] > 0.2
    # the same with more prompts than the exact test enumerates (the bootstrap's interval was a point too)
    many = {f"p{i}": {"scores": {"inst": {"num": i % 2, "den": 2}}} for i in range(40)}
    assert paired_difference(many, many, "inst").ci[1] > 0.03
    # a difference somewhere keeps the permutation test
    b = dict(a, p1={"scores": {"inst": {"num": 2, "den": 2}}})
    assert paired_difference(a, b, "inst").test == "paired-permutation-exact"


def _run(i: int, **overrides) -> Run:
    return Run(
        Path(f"/runs/ev_{i}"),
        "evaluate",
        "completed",
        {k.replace("__", "."): v for k, v in overrides.items()},
        {"mcq.acc": 0.5},
    )


def test_labels_are_the_shortest_part_that_tells_runs_apart_and_wrap_at_separators():
    from chipadapt.eval.compare_plots import short_labels

    runs = [
        _run(0, eval__mcq__limit="40", eval__ifeval__limit="8"),
        _run(
            1,
            model__path="/tmp/trialeval/dapt/model",
            eval__mcq__limit="60",
            eval__ifeval__limit="5",
            eval__perplexity__max_tokens="500",
        ),
    ]
    label_runs(runs, None)
    assert len(runs[1].label) > 100  # the whole override string, as the tables of figures keep it
    short = short_labels(runs)
    assert short[1] == "model.path=.../dapt/model mcq.limit=60 ifeval.limit=5 perplexity.max_tokens=500"
    assert short[0] == "mcq.limit=40 ifeval.limit=8"
    # the trial's bar label broke 'dapt/mode' / 'l'; now after a separator
    assert _wrap("model.path=/tmp/trialeval/dapt/model", 24) == "model.path=\n/tmp/trialeval/dapt/\nmodel"
    assert "mode\nl" not in "".join(plot_labels(runs, 24))
    label_runs(runs, ["base", "dapt"])
    assert short_labels(runs) == ["base", "dapt"]
