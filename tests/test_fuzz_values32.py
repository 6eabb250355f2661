"""Values a config-fuzz trial found accepted, or refused naming another key than the one the user set."""

import pytest
from omegaconf import OmegaConf
from test_reproduce import compose_reproduce

from chipadapt.errors import ChipadaptError


@pytest.mark.parametrize("key", ["max_steps", "max_epochs"])
def test_a_trainer_length_of_zero_is_refused_and_minus_one_stays_unset(key):
    from chipadapt.trainer_schema import check_trainer

    with pytest.raises(ChipadaptError, match=rf"^trainer\.{key}: 0 trains nothing; .*-1"):
        check_trainer(OmegaConf.create({"trainer": {key: 0}}))
    with pytest.raises(ChipadaptError, match=rf"^trainer\.{key}: 0 trains nothing"):
        check_trainer(OmegaConf.create({"trainer": {key: 0.0}}))  # a whole float is read as its int
    check_trainer(OmegaConf.create({"trainer": {key: -1}}))
    check_trainer(OmegaConf.create({"trainer": {key: 3}}))


def test_the_plan_reads_max_steps_zero_as_zero_steps_not_as_unset():
    from chipadapt.batch_plan import planned_steps

    assert planned_steps(223, 0, 1) == (0, None)  # was 223: 0 read as unset
    assert planned_steps(223, -1, 1) == (223, None)


@pytest.mark.parametrize("size", [0, -5])
def test_a_shard_size_below_one_byte_is_refused(size):
    from chipadapt.config_job_checks import check_root_values

    with pytest.raises(ChipadaptError, match=rf"^max_shard_bytes: {size} is not a size in bytes >= 1$"):
        check_root_values(OmegaConf.create({"max_shard_bytes": size}))
    check_root_values(OmegaConf.create({"max_shard_bytes": 1, "preset": "lm_eval"}))


def test_the_root_preset_is_checked_and_named_as_the_user_set_it():
    from chipadapt.config_job_checks import check_eval, check_root_values

    with pytest.raises(ChipadaptError, match=r"^preset: 'nope' is not one of chipadapt, lm_eval$"):
        check_root_values(OmegaConf.create({"preset": "nope", "eval": {"perplexity": {}}}))
    # A task that takes the root's preset names `preset`; one set on the task itself names the task's key.
    cfg = OmegaConf.create({"preset": "nope", "eval": {"mcq": {"preset": "${preset}"}}})
    with pytest.raises(ChipadaptError, match=r"^preset: 'nope'"):
        check_eval(cfg.eval)
    cfg = OmegaConf.create({"preset": "chipadapt", "eval": {"mcq": {"preset": "nope"}}})
    with pytest.raises(ChipadaptError, match=r"^eval\.mcq\.preset: 'nope'"):
        check_eval(cfg.eval)
    check_eval(OmegaConf.create({"eval": {"mcq": {"preset": "${preset}"}}}).eval)  # no root preset: the task says


def test_only_and_force_take_one_step_name_as_a_list_of_one():
    from chipadapt.reproduce.run import step_names

    cfg = OmegaConf.create({"only": "report", "force": ["sft", "tokenizer"], "bad": 5, "none": None})
    assert step_names(cfg, "only") == {"report"}
    assert step_names(cfg, "force") == {"sft", "tokenizer"}
    assert step_names(cfg, "none") == set()
    with pytest.raises(ChipadaptError, match=r"^bad: 5 is not a step name or a list of step names"):
        step_names(cfg, "bad")


def test_only_report_as_a_word_plans_the_report_in_a_dry_run(tmp_path, capsys):
    from chipadapt.reproduce.run import run

    cfg = compose_reproduce(
        ["variant=fast", "dry_run=true", "only=report", f"out={tmp_path / 'repro'}", f"report_dir={tmp_path / 'rep'}"]
    )
    OmegaConf.update(cfg, "paths.model_cache", str(tmp_path / "models"))
    run(cfg)
    assert "rebuilt from the run folders" in capsys.readouterr().out
    assert not (tmp_path / "models").exists() and not (tmp_path / "rep").exists()


def test_a_dry_run_checks_the_report_folder_as_the_real_run_does(tmp_path):
    from chipadapt.reproduce.run import run

    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    cfg = compose_reproduce(["variant=fast", "dry_run=true", f"out={tmp_path / 'repro'}", f"report_dir={taken}"])
    OmegaConf.update(cfg, "paths.model_cache", str(tmp_path / "models"))
    with pytest.raises(ChipadaptError, match=r"^report_dir: .*notes\.txt exists and is not a folder"):
        run(cfg)
    assert taken.read_text() == "mine"


def test_a_chip_dapt_that_names_no_step_is_told_as_chip_dapt():
    from chipadapt.reproduce.steps import load_steps

    with pytest.raises(ChipadaptError, match=r"^chip_dapt: no step named 'nope' \(.*train\.py steps: tokenizer, "):
        load_steps(compose_reproduce(["variant=fast", "chip_dapt=nope"]))


def test_export_of_a_run_folder_that_does_not_exist_says_so(tmp_path):
    from chipadapt.checkpoint_choice import chosen_step

    with pytest.raises(ChipadaptError, match=r"^run: .*/gone does not exist"):
        chosen_step(tmp_path / "gone", None, "run")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ChipadaptError, match=r"^run: .*/file is a file, not a run folder"):
        chosen_step(tmp_path / "file", None, "run")
    with pytest.raises(ChipadaptError, match=r"^run: .* has no checkpoints/ folder"):
        chosen_step(tmp_path, None, "run")


@pytest.mark.parametrize(
    ("command", "overrides", "message"),
    [
        ("evaluate", ["model=tiny", "eval=[perplexity]", "preset=nope"], r"^preset: "),
        (
            "merge",
            ["models.chip=c", "models.instruct=i", "output=o", "max_shard_bytes=0"],
            r"^max_shard_bytes: 0 is not",
        ),
    ],
)
def test_the_composed_config_refuses_root_values(command, overrides, message, tmp_path):
    """What each command validates (config_schema.validate), not only the check on its own."""
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    from chipadapt.config_schema import validate

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(command, overrides=[*overrides, f"paths.output_dir={tmp_path}"])
    with pytest.raises(ChipadaptError, match=message):
        validate(cfg)


def test_a_lone_path_where_a_list_is_wanted_is_named_with_the_list_to_write():
    """`data.curate.inputs=docs/hello.txt` was OmegaConf's "AnyNode is not a ListConfig"."""
    from chipadapt.config_groups import CurateSchema
    from chipadapt.config_typing import typed_group

    with pytest.raises(
        ChipadaptError, match=r"^data\.curate\.inputs: 'docs/hello.txt' is not a list; write \[docs/hello.txt\]$"
    ):
        typed_group("data.curate", CurateSchema, OmegaConf.create({"inputs": "docs/hello.txt"}))
    # Where the bare text would be read as another list (two items, a bool, a number), the item is quoted.
    for given, written in (("a,b.txt", "['a,b.txt']"), (True, "['True']"), ("x]", "['x]']")):
        with pytest.raises(ChipadaptError) as refused:
            typed_group("data.curate", CurateSchema, OmegaConf.create({"inputs": given}))
        assert str(refused.value) == f"data.curate.inputs: {given!r} is not a list; write {written}"
