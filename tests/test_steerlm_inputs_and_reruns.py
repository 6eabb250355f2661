"""A new user's SteerLM chain on their own data (helpers.steerlm_own_data), what annotate and bootstrap
take and when they refuse, as the trial found them:
- annotate.input.path=<own file> lost a fifth of it to the EDA evaluation split meant for the EDA corpus;
- annotate.limit=0 was a ZeroDivisionError, -1 dropped the last row; misspelt or off-scale bootstrap
  settings ran; a rerun with other settings replaced annotated.jsonl / bootstrap.jsonl without asking;
- export.py's refusal of another command's folder said "no chipadapt marker" where the folder had one."""

import json

import pytest
from conftest import TINY_FAST, compose, write_jsonl
from helpers.steerlm_own_data import (
    annotate_overrides,
    bootstrap_overrides,
    prompt_completion_rows,
    rows_of,
    trained_attribute_model,
)

from chipadapt.errors import ChipadaptError


@pytest.fixture(scope="module")
def steer(tmp_path_factory):
    """The user's data and the attribute model trained on it (helpers.steerlm_own_data)."""
    return trained_attribute_model(tmp_path_factory)


# The EDA evaluation split: the EDA corpus's, not the user's file's.


def test_the_eda_split_applies_to_the_eda_corpus_and_is_counted(steer, tmp_path):
    from chipadapt.stages.annotate import input_spec, read_input

    default = compose(["stage=annotate", *TINY_FAST, "annotate.attribute_model=a"], tmp_path)
    spec, switch_off = input_spec(default.annotate)
    assert spec["exclude_eval_split"] == {"fraction": 0.2} and switch_off == "annotate.eda_eval_split=null keeps them"

    own = compose(annotate_overrides(steer), tmp_path)
    spec, switch_off = input_spec(own.annotate)
    assert "exclude_eval_split" not in spec and switch_off is None

    # Asked for by name on any file: applied, and what it leaves out is counted.
    asked = compose(annotate_overrides(steer, "+annotate.input.exclude_eval_split={fraction: 0.5}"), tmp_path)
    spec, switch_off = input_spec(asked.annotate)
    convs, left_out = read_input(spec, switch_off)
    assert 0 < left_out < 30 and len(convs) + left_out == 30


# Counts and attribute settings: one line naming the key, before anything runs.


@pytest.mark.parametrize(
    "override, message",
    [
        ("annotate.limit=0", r"annotate.limit: 0 is not a whole number >= 1 \(null takes them all\)"),
        ("annotate.limit=-1", r"annotate.limit: -1 is not a whole number >= 1"),
        ("annotate.batch_size=0", r"annotate.batch_size: 0 is not a whole number >= 1"),
    ],
)
def test_annotate_counts_that_select_nothing_are_refused(tmp_path, override, message):
    from chipadapt.config_schema import validate

    with pytest.raises(ChipadaptError, match=message):
        validate(compose(["stage=annotate", *TINY_FAST, "annotate.attribute_model=a", override], tmp_path))
    cfg = compose(["stage=annotate", *TINY_FAST, "annotate.attribute_model=a", "annotate.limit=3e1"], tmp_path)
    validate(cfg)
    assert cfg.annotate.limit == 30


@pytest.mark.parametrize(
    "settings, message",
    [
        ("[{quality: 9, helpfulnes: 4}]", r"\[0\]\.helpfulnes: not an attribute .*did you mean helpfulness\?"),
        ("[{quality: 9, helpfulness: 4}]", r"\[0\]\.quality: 9 is off SteerLM's 0-4 scale"),
        ("[{quality: 4}, {humor: -1}]", r"\[1\]\.humor: -1 is off SteerLM's 0-4 scale"),
        ("[{}]", r"\[0\]: expected a mapping"),
    ],
)
def test_bootstrap_settings_off_the_scale_or_misspelt_are_refused(tmp_path, settings, message):
    from chipadapt.config_schema import validate

    cfg = compose(
        ["stage=bootstrap", *TINY_FAST, "bootstrap.attribute_model=a", f"bootstrap.attribute_settings={settings}"],
        tmp_path,
    )
    with pytest.raises(ChipadaptError, match=r"bootstrap\.attribute_settings" + message):
        validate(cfg)


def test_bootstrap_score_weights_must_weigh_a_rated_attribute(steer, tmp_path, caplog):
    from chipadapt.pipeline import train

    for weights in ("{helpfulnes: 1.0}", "{toxicity: -1.0}"):  # misspelt; a head without training labels
        with pytest.raises(ChipadaptError, match=r"bootstrap.score_weights: no weight on an attribute .* rates"):
            train(
                compose(
                    bootstrap_overrides(steer, "~bootstrap.score_weights", f"+bootstrap.score_weights={weights}"),
                    tmp_path / "w",
                )
            )
    assert "bootstrap.score_weights: helpfulnes left out of the score" in caplog.text


# Reruns: the training stages' rule.


def test_a_rerun_with_other_settings_keeps_the_output_unless_overwrite(steer, tmp_path, caplog):
    from chipadapt.pipeline import train

    caplog.set_level("INFO", logger="chipadapt.pipeline")
    run = tmp_path / "ann"
    train(compose(annotate_overrides(steer, "annotate.limit=6"), run))
    written = (run / "annotated.jsonl").read_bytes()
    manifest = (run / "manifest.json").read_bytes()

    again = train(
        compose(annotate_overrides(steer, "annotate.limit=6"), run)
    )  # the same settings: passed, nothing redone
    assert again["annotated"] == 6 and (run / "manifest.json").read_bytes() == manifest
    assert "completed before with these settings and inputs; not annotated again" in caplog.text

    with pytest.raises(
        ChipadaptError,
        match=r"annotated.jsonl exists, written by a completed annotate run with other settings "
        r"\(annotate.limit: 6 -> 4\); overwrite=true replaces it",
    ):
        train(compose(annotate_overrides(steer, "annotate.limit=4"), run))
    assert (run / "annotated.jsonl").read_bytes() == written and (run / "manifest.json").read_bytes() == manifest

    train(compose(annotate_overrides(steer, "annotate.limit=4", "overwrite=true"), run))
    assert len(rows_of(run / "annotated.jsonl")) == 4
    manifest = (run / "manifest.json").read_bytes()
    # Those settings again without overwrite=true: passed (overwrite says what may go, not what is made).
    assert train(compose(annotate_overrides(steer, "annotate.limit=4"), run))["annotated"] == 4
    assert (run / "manifest.json").read_bytes() == manifest


def test_a_rerun_after_the_input_changed_is_refused_and_a_file_of_a_failed_run_kept(steer, tmp_path):
    from chipadapt.pipeline import train
    from chipadapt.stages.bootstrap import finished_before

    own = write_jsonl(tmp_path / "pc.jsonl", prompt_completion_rows(5))
    run = tmp_path / "ann"
    overrides = [*annotate_overrides(steer), f"annotate.input.path={own}"]  # the later override wins
    train(compose(overrides, run))
    write_jsonl(own, prompt_completion_rows(6))
    with pytest.raises(ChipadaptError, match=r"whose inputs changed since \(annotate.input\)"):
        train(compose(overrides, run))

    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "bootstrap.jsonl").write_text('{"id": "boot0"}\n')  # a round that failed after writing
    (boot / "manifest.json").write_text(json.dumps({"kind": "train", "status": "failed"}))
    with pytest.raises(ChipadaptError, match=r"bootstrap.jsonl exists, not as a completed run in this folder wrote it"):
        finished_before(compose(bootstrap_overrides(steer), boot), boot)
    assert finished_before(compose(bootstrap_overrides(steer, "overwrite=true"), boot), boot) is None
    # The same settings as the run that failed: it runs again, as a training run resumes.
    from omegaconf import OmegaConf

    cfg = compose(bootstrap_overrides(steer), boot)
    record = {"kind": "train", "status": "failed", "config": OmegaConf.to_container(cfg, resolve=True)}
    (boot / "manifest.json").write_text(json.dumps(record))
    assert finished_before(cfg, boot) is None


# export.py into another command's folder.


def test_a_refused_output_folder_names_the_command_whose_marker_it_carries(tmp_path):
    from chipadapt.io.outputs import check_output_folder, write_marker

    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    write_marker(model, "train")
    with pytest.raises(
        ChipadaptError, match=r"is not an output of export \(train wrote it, as its .chipadapt-output.json says\)"
    ):
        check_output_folder(model, "export", "output", overwrite=True)
    (model / ".chipadapt-output.json").unlink()
    with pytest.raises(ChipadaptError, match=r"is not an output of export \(no chipadapt marker\)"):
        check_output_folder(model, "export", "output", overwrite=True)
