"""A search's intervals, trial count and metric are checked before its first trial: before, a reversed or
log-from-0 interval and n_trials=0 were tracebacks, a whole-number key searched over an interval ran with
fractions, and a metric of another stage was found missing after trial 0 trained."""

import pytest
from conftest import CONF
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.sweep_preflight import (
    check_int_intervals,
    check_metric_of_stage,
    check_sweeper_and_launcher,
    searched_lines,
    swept_values,
)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("train", overrides=overrides, return_hydra_config=True)


def searching(extra: str):
    """The dapt search's config as the sweep starts, with `extra` on its command line (compose refuses sweeps)."""
    from omegaconf import read_write

    config = compose(["hparams_search=dapt_optuna", "model=tiny"])
    with read_write(config.hydra.overrides):
        config.hydra.overrides.task.append(extra)
    return config


def values(line: str) -> list:
    return swept_values(OverridesParser.create().parse_overrides([line])[0])


def test_an_interval_is_checked_at_its_ends_and_midpoint():
    assert values("optim.lr=interval(0.0,1.0)") == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("optim.lr=interval(1e-3,1e-6)", "low end is above its high end"),
        ("optim.lr=tag(log,interval(0,1e-3))", "log scale needs a low end above 0"),
    ],
)
def test_a_bad_interval_is_refused(line, said):
    with pytest.raises(ChipadaptError, match=said):
        values(line)


def test_no_trials_is_refused(capsys):
    config = compose(["hparams_search=dapt_optuna", "model=tiny", "hydra.sweeper.n_trials=0"])
    with pytest.raises(SystemExit) as stop:
        check_sweeper_and_launcher(config.hydra)
    assert stop.value.code == 2 and "n_trials=0" in capsys.readouterr().err


def test_the_presets_params_are_checked_with_the_command_line_winning():
    config = searching("optim.lr=interval(1e-5,1e-4)")
    lines = searched_lines(config)
    assert "optim.lr=interval(1e-5,1e-4)" in lines
    assert sum(line.startswith("optim.lr=") for line in lines) == 1
    assert any(line.startswith("optim.scheduler.num_warmup_steps=") for line in lines)


def test_a_whole_number_key_over_an_interval_is_refused(capsys):
    config = searching("optim.scheduler.num_warmup_steps=interval(0.5,2.5)")
    job = compose(["hparams_search=dapt_optuna", "model=tiny"])
    with pytest.raises(SystemExit):
        check_int_intervals(config, job)
    assert "is a whole number" in capsys.readouterr().err


def test_a_metric_of_another_stage_is_refused():
    job = compose(["hparams_search=dapt_optuna", "model=tiny", "stage=retriever"])
    with pytest.raises(ChipadaptError, match="not a metric of stage=retriever"):
        check_metric_of_stage(OmegaConf.masked_copy(job, [k for k in job if k != "hydra"]))
    check_metric_of_stage(compose(["hparams_search=dapt_optuna", "model=tiny"]))  # val/domain/bpb: fine


def test_a_metric_of_an_unselected_task_says_to_add_the_task():
    from chipadapt.config_job_checks import check_optimized_metric

    config = OmegaConf.create({"optimized_metric": "ifeval.prompt_loose", "eval": {"perplexity": {}}})
    with pytest.raises(ChipadaptError, match=r"add its task to eval: eval=\[perplexity,ifeval\]"):
        check_optimized_metric(config)


def test_a_float_key_written_as_a_whole_number_in_its_yaml_is_searched_over_an_interval():
    config = searching("optim.gradient_clip_val=interval(0.5,2.5)")
    job = compose(["hparams_search=dapt_optuna", "model=tiny"])
    job.optim.gradient_clip_val = 1  # `gradient_clip_val: 1` in an optim YAML: a float to the typed schema
    check_int_intervals(config, job)
