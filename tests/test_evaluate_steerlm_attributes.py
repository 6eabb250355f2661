"""evaluate.py's generate.attributes: a SteerLM model's generation tasks are prompted with its attribute
string, in the template and order its folder records (eval/steering.py). evaluate.py had no such key:
a SteerLM model was scored unsteered, and nothing said so."""

import logging

import pytest
from omegaconf import OmegaConf
from test_steerlm_progress_journal import Watched
from test_steerlm_template_record import steerlm_folder  # noqa: F401 (a fixture)

from chipadapt.errors import ChipadaptError
from chipadapt.eval.steering import STEERING, start_steering, steering_record, stop_steering
from chipadapt.models.text_generation import generate


def test_generation_prompts_a_steerlm_model_with_its_attributes(steerlm_folder, caplog):  # noqa: F811
    from transformers import AutoModelForCausalLM

    from chipadapt.models.hf_folder import load_tokenizer

    cfg = OmegaConf.create({"generate": {"attributes": "humor:0,quality:4"}})
    token = STEERING.set(None)
    try:
        assert start_steering(cfg, steerlm_folder) == "quality:4,humor:0"  # the recorded order
        assert steering_record()["steerlm_attributes"] == "quality:4,humor:0"
        tokenizer = load_tokenizer(steerlm_folder)
        model = Watched(AutoModelForCausalLM.from_pretrained(steerlm_folder).eval())
        model.generate = lambda **kw: (model.calls.append(kw["input_ids"]), kw["input_ids"])[1]
        generate(model, tokenizer, ["Fix hold?"], 1, 2, chat=True, temperature=1.0)
        prompt = tokenizer.decode(model.calls[0][0], skip_special_tokens=False)
        assert prompt.endswith("<extra_id_1>Assistant\n<extra_id_2>quality:4,humor:0\n")

        with caplog.at_level(logging.WARNING):  # a SteerLM folder and no attributes: said
            assert start_steering(OmegaConf.create({"generate": {"attributes": None}}), steerlm_folder) is None
        assert "generate.attributes is not set" in caplog.text and STEERING.get() is None
        with pytest.raises(ChipadaptError, match="^generate.attributes: .* records no steerlm_attribute_order"):
            start_steering(cfg, steerlm_folder.parent)
    finally:
        STEERING.reset(token)
        stop_steering()


def test_a_folder_recording_a_template_without_the_order_is_named_as_such(tmp_path):
    # It read "records no steerlm_attribute_order and steerlm_template (not a SteerLM model ...)".
    import json

    from chipadapt.steerlm.attribute_record import TEMPLATE_KEY

    for template in ({"_target_": "chipadapt.data.chat_templates.ChatTemplate"}, "x {quality}"):
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", TEMPLATE_KEY: template}))
        token = STEERING.set(None)
        try:
            with pytest.raises(ChipadaptError) as refused:
                start_steering(OmegaConf.create({"generate": {"attributes": "quality:4"}}), tmp_path)
        finally:
            STEERING.reset(token)
        message = str(refused.value)
        assert message.startswith(
            f"generate.attributes: {tmp_path}/config.json records steerlm_template but no steerlm_attribute_order"
        )
        assert "not a SteerLM model" not in message and "\n" not in message
