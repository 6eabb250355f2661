"""compare.py's plots for base against adapted: an item selector (eval.chip_mcq.limit 12 vs 6) was the
curve's x axis; runs compare.md marks as not comparable were drawn on the val/ curve unmarked; learning
rates 1e-4 and 1e-3 sat on a linear axis; the paired plot's titles ran into each other in the 2x2 grid and
its labels showed whole paths where the paths share no folder."""

from pathlib import Path

from chipadapt.eval import compare_plots
from chipadapt.eval.compare import numeric_axis
from chipadapt.eval.compare_plots import comparable, log_scale, paired_plot, short_labels
from chipadapt.eval.compare_runs import Run


def run(i: int, metrics: dict, **overrides) -> Run:
    return Run(
        Path(f"/runs/{i}"), "eval", "completed", {k.replace("__", "."): v for k, v in overrides.items()}, metrics
    )


def test_an_item_selector_is_never_the_curves_x_axis():
    runs = [run(0, {"a": 1.0}, eval__chip_mcq__limit="12"), run(1, {"a": 2.0}, eval__chip_mcq__limit="6")]
    assert numeric_axis(runs, None) is None  # bars
    runs = [run(0, {"a": 1.0}, eval__mcq__max_per_subject="1", optim__lr="1e-4")]
    runs.append(run(1, {"a": 1.0}, eval__mcq__max_per_subject="2", optim__lr="1e-3"))
    assert numeric_axis(runs, None) == "optim.lr"


def test_a_tenfold_learning_rate_range_gets_a_log_axis():
    assert log_scale([1e-4, 1e-3]) and not log_scale([2e-4, 1e-3])


def test_runs_with_val_figures_of_other_text_are_left_out_of_their_panel():
    marked = run(1, {"val/bpb": 2.0})
    marked.extra["val_note"] = "validation scored by another rule"
    runs = [run(0, {"val/bpb": 1.0}), marked]
    assert comparable(runs, "val/bpb") == runs[:1] and comparable(runs, "train/loss") == runs


def test_model_paths_without_a_common_folder_are_shown_by_their_distinct_endings():
    runs = [
        run(0, {}, model__path="/root/.cache/chipadapt/models/tiny-llama-d4ee"),
        run(1, {}, model__path="/tmp/trialrepro/sw_tb/0/model"),
    ]
    for r in runs:
        r.label = f"model.path={r.overrides['model.path']}"
        r.label_keys = ["model.path"]
    assert short_labels(runs) == ["model.path=.../models/tiny-llama-d4ee", "model.path=.../0/model"]


def test_paired_panel_titles_are_wrapped_to_the_panel(tmp_path, monkeypatch):
    titles = []
    monkeypatch.setattr(compare_plots, "_save", lambda fig, plt, path: titles.extend(a.get_title() for a in fig.axes))
    against = "model.path=.../models/tiny-llama-d4eeebd11c77f0e9 eval=[perplexity,chip_mcq,ifeval] ifeval.limit=4"
    rows = [
        {"metric": m, "run": "model.path=.../0/model", "against": against, "difference": 0.1, "ci95_lo": -0.1}
        | {"ci95_hi": 0.3, "p": 0.5, "verdict": "within noise"}
        for m in ("perplexity.domain.bpb", "perplexity.general.bpb", "chip_mcq.acc")
    ]
    paired_plot(rows, tmp_path)
    assert titles and all(max(len(line) for line in t.splitlines()) <= compare_plots.TITLE_WIDTH for t in titles if t)
