"""compare.py's plots: labels that tell the runs apart, one line per setting of the other swept keys."""

from pathlib import Path

from chipadapt.eval.compare_plots import _series, metric_plot, plot_labels
from chipadapt.eval.compare_runs import Run, label_runs


def run(i: int, metric: float, **overrides) -> Run:
    return Run(
        Path(f"/runs/{i}"),
        "train",
        "completed",
        {k.replace("__", "."): v for k, v in overrides.items()},
        {"val/bpb": metric},
    )


def test_two_model_paths_that_share_their_ends_get_labels_that_differ():
    runs = [
        run(0, 1.0, model__path="/data/experiments_2026/runA/model"),
        run(1, 2.0, model__path="/data/experiments_2026/runB/model"),
    ]
    label_runs(runs, None)
    assert plot_labels(runs, 16) == ["model.path=\n.../runA/...", "model.path=\n.../runB/..."]
    assert runs[0].label == "model.path=/data/experiments_2026/runA/model"  # the tables keep the whole path
    label_runs(runs, ["base", "adapted"])
    assert plot_labels(runs, 30) == ["base", "adapted"]


def test_a_long_label_is_wrapped_whole_not_cut(tmp_path):
    settings = [("1e-4", "64"), ("5e-6", "128")]
    runs = [run(i, 1.0, optim__lr=lr, data__seq_len=n) for i, (lr, n) in enumerate(settings)]
    label_runs(runs, None)
    assert plot_labels(runs, 16) == ["optim.lr=1e-4\ndata.seq_len=64", "optim.lr=5e-6\ndata.seq_len=128"]


def test_the_curve_has_one_line_per_setting_of_the_other_swept_keys(tmp_path):
    runs = [
        run(i, float(i), optim__lr=lr, data__seq_len=n)
        for i, (lr, n) in enumerate([("1e-4", "64"), ("5e-6", "64"), ("1e-4", "128"), ("5e-6", "128")])
    ]
    series = _series(runs, "data.seq_len")
    assert {name: [r.overrides["data.seq_len"] for r in members] for name, members in series.items()} == {
        "optim.lr=1e-4": ["64", "128"],
        "optim.lr=5e-6": ["64", "128"],
    }
    label_runs(runs, None)
    assert metric_plot(runs, ["val/bpb"], "data.seq_len", tmp_path).stat().st_size > 1000


def test_a_search_whose_runs_differ_in_every_key_is_one_line_along_the_axis():
    runs = [
        run(i, float(i), optim__lr=lr, data__seq_len=n) for i, (lr, n) in enumerate([("1e-4", "64"), ("5e-6", "128")])
    ]
    assert list(_series(runs, "data.seq_len")) == [""]
