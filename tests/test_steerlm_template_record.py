"""A SteerLM model is prompted in the chat template it was trained in. A model trained with
data/template=chipnemo learned `<extra_id_2>quality:4,humor:0` after the assistant header; chat.py's
default template (`model`) and bootstrap's wrote `Attributes: quality:4,humor:0` in the system turn,
a format it never saw, and nothing said so. The folder now records its template beside its attribute
order (steerlm/attribute_record.py), used by default; chat.py refuses another one named explicitly."""

import json

import pytest
from helpers.models import tiny_llama
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_chipnemo_turn_end import ROOT

from chipadapt.errors import ChipadaptError
from chipadapt.steerlm.attribute_record import record_attribute_order, recorded_template
from chipadapt.steerlm.steering_template import steering_template

CHIPNEMO = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/data/template/chipnemo.yaml"))
MODEL = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/data/template/model.yaml"))


@pytest.fixture(scope="module")
def steerlm_folder(tmp_path_factory):
    """A model folder as stage=steerlm with data/template=chipnemo publishes it."""
    from transformers import AutoConfig

    folder = tiny_llama(tmp_path_factory.mktemp("steer"), num_layers=1, max_position_embeddings=256)
    config = AutoConfig.from_pretrained(folder)
    record_attribute_order(config, ["quality", "humor"], CHIPNEMO)
    config.save_pretrained(folder)
    return folder


def test_the_folder_records_its_training_template(steerlm_folder):
    assert recorded_template(steerlm_folder) == CHIPNEMO
    assert json.loads((steerlm_folder / "config.json").read_text())["steerlm_attribute_order"] == ["quality", "humor"]


def test_the_recorded_template_is_the_default_and_an_explicit_other_one_is_refused(steerlm_folder):
    assert steering_template(MODEL, steerlm_folder, "template", explicit=False, refuse=True) == CHIPNEMO
    with pytest.raises(ChipadaptError, match=r"^template is ModelChatTemplate .* StringTemplate .*steerlm_template"):
        steering_template(MODEL, steerlm_folder, "template", explicit=True, refuse=True)
    # bootstrap: data.template is also the attribute model's; the SteerLM model samples in its own.
    assert steering_template(MODEL, steerlm_folder, "data.template", explicit=True, refuse=False) == CHIPNEMO
    # The same format with another default system prompt, asked for by name: as asked.
    own_system = {**CHIPNEMO, "default_system": "You review Verilog."}
    assert steering_template(own_system, steerlm_folder, "template", explicit=True, refuse=True) == own_system
    # A folder that records none (a base model, or one saved before the record): as configured.
    assert steering_template(MODEL, steerlm_folder.parent, "template", explicit=True, refuse=True) == MODEL


def test_chat_prompts_a_chipnemo_trained_model_in_its_format_by_default(steerlm_folder):
    from chipadapt.chat import ChatSession

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("chat", overrides=[f"model.path={steerlm_folder}", "generate.attributes='quality:4,humor:0'"])
    prompt = ChatSession(cfg).prompt_text([{"role": "user", "content": "Fix hold?"}])
    assert prompt.endswith("<extra_id_1>Assistant\n<extra_id_2>quality:4,humor:0\n")  # as training rendered it
    assert "Attributes:" not in prompt
