"""An Optuna search optimises its metric the way the metric is better: a preset's metric overridden
with one of the other sense, its direction kept, is refused before the first trial (before, the
merge search maximised bits per byte and reported the worst lambda as the best)."""

import subprocess
import sys

import pytest
from conftest import CONF, ROOT

MERGE = ["models.chip=/c", "models.instruct=/i", "eval=[perplexity,ifeval]"]


def compose_search(config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("val/domain/bpb", "minimize"),
        ("perplexity.domain.bpb", "minimize"),
        ("perplexity.general.ppl", "minimize"),
        ("val/domain/loss", "minimize"),
        ("train_loss", "minimize"),
        ("ifeval.prompt_loose", "maximize"),
        ("mcq.acc", "maximize"),
        ("retrieval.synthetic_heldout.finetuned.mrr@10", "maximize"),
        ("val.minilm.hit@8", "maximize"),
        ("bug_summary.technical.rougeL", "maximize"),
        ("perplexity.domain.tokens", None),  # a count, not a metric: sense unknown
        ("ifeval.max_new_tokens", None),  # a setting
        ("perplexity.domain.bpb_stderr", None),  # an interval's part
    ],
)
def test_each_metric_the_project_defines_has_its_direction(name, direction):
    from chipadapt.optimized_metric import better_direction

    assert better_direction(name) == direction


@pytest.mark.parametrize(
    ("config_name", "overrides"),
    [
        ("train", ["hparams_search=dapt_optuna"]),
        ("train", ["stage=retriever", "hparams_search=retriever_optuna"]),
        ("merge", [*MERGE, "hparams_search=merge_lam_optuna"]),
    ],
)
def test_every_preset_searches_its_metric_the_way_it_is_better(config_name, overrides, capsys):
    from chipadapt.sweep_preflight import check_direction

    check_direction(compose_search(config_name, overrides))  # no exit
    assert capsys.readouterr().err == ""


def test_a_preset_metric_overridden_with_one_of_the_other_sense_is_refused_in_one_line(capsys, caplog):
    from chipadapt.sweep_preflight import check_direction

    cfg = compose_search("merge", [*MERGE, "hparams_search=merge_lam_optuna", "optimized_metric=perplexity.domain.bpb"])
    with pytest.raises(SystemExit) as stopped:
        check_direction(cfg)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "chipadapt: error: hydra.sweeper.direction=maximize but optimized_metric=perplexity.domain.bpb is "
        "lower-is-better; set hydra.sweeper.direction=minimize\n"
    )
    # Told the direction too, the search runs; a metric whose sense is not known is the user's call.
    for extra in (
        ["optimized_metric=perplexity.domain.bpb", "hydra.sweeper.direction=minimize"],
        ["optimized_metric=perplexity.domain.tokens"],
    ):
        check_direction(compose_search("merge", [*MERGE, "hparams_search=merge_lam_optuna", *extra]))
    # Higher-is-better is the rule for every other name, a misspelt one too: a warning, not a refusal
    # that would call `val/domain/bpbb` higher-is-better before the run names the typo.
    for metric in ("val/domain/acc", "val/domain/bpbb"):
        with caplog.at_level("WARNING", logger="chipadapt.sweep_preflight"):
            check_direction(compose_search("train", ["hparams_search=dapt_optuna", f"optimized_metric={metric}"]))
        assert f"optimized_metric={metric} is higher-is-better" in caplog.text
        assert "set hydra.sweeper.direction=maximize if that is not meant" in caplog.text
        caplog.clear()


def test_the_refusal_comes_before_any_trial(tmp_path):
    sweep = tmp_path / "search"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "merge.py"),
            "hparams_search=merge_lam_optuna",
            "hydra.sweeper.n_trials=3",
            *MERGE,
            "optimized_metric=perplexity.domain.bpb",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        "chipadapt: error: hydra.sweeper.direction=maximize but optimized_metric=perplexity.domain.bpb is "
        "lower-is-better; set hydra.sweeper.direction=minimize"
    ]
    assert "Directions" not in proc.stdout + proc.stderr and not sweep.exists()
