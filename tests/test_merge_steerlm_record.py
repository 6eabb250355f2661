"""A merged SteerLM model keeps the attribute order and template its SteerLM input records, where its
weights are merged in, so evaluate.py's generate.attributes steers it; where the record is not carried
(the inputs record different ones, or the recording input has no weight in the merge), evaluate.py's
refusal says that merge.py left it out and why. Before, only the chip model's config.json was read: an
instruct model's record was lost, and the merged model was evaluated unsteered."""

import json
from types import SimpleNamespace

import pytest
from helpers.models import perturbed_copy, tiny_model_copy
from omegaconf import OmegaConf
from test_merge import merge_cfg
from test_steerlm_template_record import CHIPNEMO, MODEL

from chipadapt.errors import ChipadaptError
from chipadapt.eval.steering import STEERING, start_steering
from chipadapt.merge.run import run
from chipadapt.merge.steerlm_record import carried_record
from chipadapt.steerlm.attribute_record import ORDER_KEY, TEMPLATE_KEY, recorded_attribute_order, recorded_template

STEERED = OmegaConf.create({"generate": {"attributes": "quality:4,humor:0"}})


def record(order, template=CHIPNEMO) -> dict:
    return {ORDER_KEY: list(order), TEMPLATE_KEY: template}


def model(key: str, steerlm: dict | None) -> SimpleNamespace:
    return SimpleNamespace(key=key, config={"model_type": "llama", **(steerlm or {})})


def test_the_record_is_carried_where_the_merged_weights_hold_a_steerlm_models():
    steer, other = record(["quality", "humor"]), record(["humor", "quality"])
    chip, instruct = model("models.chip", steer), model("models.instruct", None)
    assert carried_record(chip, instruct, [0.5, 0.7])[0] == steer
    assert carried_record(chip, instruct, [0.0, 0.0]) == (
        None,
        {"from": None, "why": "only models.chip records one, and none of its weights are in the merge"},
    )
    assert carried_record(model("models.chip", None), model("models.instruct", steer), [0.3])[0] == steer
    assert carried_record(model("models.chip", None), model("models.instruct", steer), [1.0])[0] is None
    assert carried_record(chip, model("models.instruct", steer), [0.5])[0] == steer  # both agree
    assert carried_record(chip, model("models.instruct", other), [0.5])[0] is None
    assert carried_record(chip, model("models.instruct", record(["quality", "humor"], MODEL)), [0.5])[0] is None


@pytest.fixture
def pair(tmp_path):
    """(chip, instruct): disposable tiny models, the instruct one a SteerLM model."""
    instruct = tiny_model_copy(tmp_path, "instruct")
    chip = perturbed_copy(instruct, tmp_path / "chip")
    config = json.loads((instruct / "config.json").read_text())
    (instruct / "config.json").write_text(json.dumps({**config, **record(["quality", "humor"])}))
    return chip, instruct


def test_a_merged_model_is_steered_as_its_steerlm_input(tmp_path, pair):
    chip, instruct = pair
    out = tmp_path / "merged"
    run(merge_cfg("chipalign", chip, instruct, out, lam=0.5))
    assert recorded_attribute_order(out) == ["quality", "humor"] and recorded_template(out) == CHIPNEMO
    summary = json.loads((out / "merge_manifest.json").read_text())["summary"]
    assert summary["steerlm_record"]["from"] == "models.instruct"
    token = STEERING.set(None)
    try:
        assert start_steering(STEERED, out) == "quality:4,humor:0"
    finally:
        STEERING.reset(token)


def test_a_record_left_out_is_named_when_attributes_are_asked_for(tmp_path, pair):
    chip, instruct = pair
    out = tmp_path / "merged"
    run(merge_cfg("chipalign", chip, instruct, out, lam=1.0))  # the chip model's weights only
    assert recorded_attribute_order(out) is None
    token = STEERING.set(None)
    try:
        with pytest.raises(ChipadaptError) as refused:
            start_steering(STEERED, out)
    finally:
        STEERING.reset(token)
    message = str(refused.value)
    assert message.startswith("generate.attributes: ") and "records no steerlm_attribute_order" in message
    assert "merge.py did not carry its inputs' record" in message
    assert "only models.instruct records one, and none of its weights are in the merge" in message
    assert "\n" not in message


def test_a_record_carried_without_its_template_is_named_as_such(tmp_path, pair):
    # An instruct model saved before templates were recorded: its order is carried, no template exists.
    chip, instruct = pair
    config = json.loads((instruct / "config.json").read_text())
    del config[TEMPLATE_KEY]
    (instruct / "config.json").write_text(json.dumps(config))
    out = tmp_path / "merged"
    run(merge_cfg("chipalign", chip, instruct, out, lam=0.5))
    assert recorded_attribute_order(out) == ["quality", "humor"] and recorded_template(out) is None
    token = STEERING.set(None)
    try:
        with pytest.raises(ChipadaptError) as refused:
            start_steering(STEERED, out)
    finally:
        STEERING.reset(token)
    message = str(refused.value)
    assert "records steerlm_attribute_order but no steerlm_template" in message
    assert "the record merge.py carried from models.instruct has no steerlm_template" in message
    assert "did not carry" not in message and "and its weights are merged in" not in message
    assert "\n" not in message


def test_a_steerlm_folder_without_its_template_is_not_called_a_non_steerlm_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", ORDER_KEY: ["quality", "humor"]}))
    token = STEERING.set(None)
    try:
        with pytest.raises(ChipadaptError) as refused:
            start_steering(STEERED, tmp_path)
    finally:
        STEERING.reset(token)
    message = str(refused.value)
    assert "records steerlm_attribute_order but no steerlm_template" in message
    assert "a SteerLM model saved before templates were recorded" in message and "not a SteerLM model" not in message
