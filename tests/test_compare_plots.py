"""compare.py's plots and settings: labels that tell the runs apart, one line per setting of the other swept
keys (points only for a search), the x axis it picks, and bad settings as one-line errors."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.eval import compare_plots
from chipadapt.eval.compare import check_settings, compare, numeric_axis
from chipadapt.eval.compare_plots import _series, metric_plot, plot_labels
from chipadapt.eval.compare_runs import Run, label_runs

ROOT = Path(__file__).resolve().parents[1]


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


def test_a_search_whose_runs_differ_in_every_key_is_points_not_a_line(tmp_path, monkeypatch):
    runs = [
        run(i, float(i), optim__lr=lr, data__seq_len=n)
        for i, (lr, n) in enumerate([("1e-4", "64"), ("5e-6", "128"), ("3e-5", "96")])
    ]
    assert _series(runs, "data.seq_len") == {}  # a line from one run to the next would cross an lr change
    drawn = []
    monkeypatch.setattr(compare_plots, "_save", lambda fig, plt, path: drawn.append(fig) or path)
    metric_plot(runs, ["val/bpb"], "data.seq_len", tmp_path)
    (line,) = drawn[0].axes[0].lines
    assert line.get_linestyle() == "None" and list(line.get_xdata()) == [64.0, 128.0, 96.0]
    # one swept key: the runs are one curve
    sweep = [run(i, float(i), optim__lr=lr) for i, lr in enumerate(["1e-4", "5e-6", "3e-5"])]
    assert [r.overrides["optim.lr"] for r in _series(sweep, "optim.lr")[""]] == ["5e-6", "3e-5", "1e-4"]


def test_the_x_axis_is_the_key_with_the_most_values_and_the_choice_is_logged(caplog):
    trials = [
        ("3e-4", "0.7", "2.1", "1.5", "0"),
        ("2e-5", "3.2", "0.9", "0.6", "5"),
        ("8e-6", "1.1", "1.4", "3.9", "5"),
    ]
    search = [
        run(i, 1.0, optim__lr=lr, data__sources__bugs__weight=b, data__sources__docs__weight=d, x__w=w, warmup=n)
        for i, (lr, b, d, w, n) in enumerate(trials)
    ]  # an Optuna search: every key varies, three of them over every run
    with caplog.at_level(logging.INFO, logger="chipadapt.eval.compare"):
        assert numeric_axis(search, None) == "optim.lr"
    assert "compare: x axis optim.lr, 3 values; x=KEY picks another (also numeric and swept: " in caplog.text
    # two sweeps combined: three learning rates at batch 8, two batch sizes at lr 1e-4
    both = [
        run(i, 1.0, optim__lr=lr, data__global_batch_size=gbs)
        for i, (lr, gbs) in enumerate([("1e-5", "8"), ("1e-4", "8"), ("1e-3", "8"), ("1e-4", "16")])
    ]
    assert numeric_axis(both, None) == "optim.lr"
    tie = [run(i, 1.0, a__key=str(i), merge__lam=str(i / 2), optim__lr=str(i)) for i in range(3)]
    assert numeric_axis(tie, None) == "merge.lam"  # as many values: the usual keys first
    assert numeric_axis(tie, "a.key") == "a.key"
    with pytest.raises(ChipadaptError, match=r"compare.x: 'optim.lr' is not a numeric override of every run"):
        numeric_axis(both[1:2] + both[3:], "optim.lr")  # the same lr in both: nothing to plot along


def _settings(**changes):
    base = {"runs": ["r"], "labels": None, "metrics": None, "x": None, "max_plot_metrics": 9}
    return OmegaConf.create({**base, "output": "out", "overwrite": False, **changes})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"max_plot_metrics": "abc"}, "compare.max_plot_metrics: 'abc' is not a whole number of at least 1"),
        ({"max_plot_metrics": -2}, "compare.max_plot_metrics: -2 is not"),
        ({"max_plot_metrics": 0}, "compare.max_plot_metrics: 0 is not"),
        ({"max_plot_metrics": True}, "compare.max_plot_metrics: True is not"),
        ({"overwrite": "no"}, "compare.overwrite: 'no' is not true or false"),
        ({"x": 3}, "compare.x: 3 is not an override's name"),
        ({"output": None}, "compare.output: None is not a folder"),
    ],
)
def test_a_bad_setting_is_one_error_naming_its_key(changes, message):
    with pytest.raises(ChipadaptError) as err:
        check_settings(_settings(**changes))
    assert str(err.value).startswith(message)
    check_settings(_settings())  # the defaults pass


def test_labels_must_be_one_per_run_and_tell_runs_apart(tmp_path):
    runs = [run(i, 1.0, optim__lr=lr) for i, lr in enumerate(["1e-4", "1e-3"])]
    with pytest.raises(ChipadaptError, match=r"^compare.labels: 1 given for 2 runs"):
        label_runs(runs, ["a"])
    with pytest.raises(ChipadaptError, match=r"^compare.labels: 3 given for 2 runs"):
        label_runs(runs, ["a", "b", "c"])
    (tmp_path / "results.json").write_text('{"mcq": {"acc": 0.5}}')
    for key, value in (("labels", ["a", "a"]), ("metrics", ["mcq.acc", "mcq.acc"])):
        with pytest.raises(ChipadaptError, match=rf"^compare.{key}: '{value[0]}' is named twice"):
            compare(_settings(**{key: value}, runs=[str(tmp_path)]))


@pytest.mark.integration
def test_compare_py_says_a_bad_max_plot_metrics_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "compare.py"),
            f"runs=[{tmp_path}]",
            "max_plot_metrics=abc",
            f"hydra.run.dir={tmp_path / 'c'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "chipadapt: error: compare.max_plot_metrics: 'abc' is not a whole number of at least 1" in proc.stderr


def test_learning_rates_spread_over_decades_get_a_log_axis():
    from chipadapt.eval.compare_plots import log_scale

    assert log_scale([1e-6, 3e-5, 1e-3]) and not log_scale([0.0, 0.4, 1.0]) and not log_scale([0.2, 0.6, 1.0])
    assert not log_scale([5e-6]) and not log_scale([-1.0, 100.0])
