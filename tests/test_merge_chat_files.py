"""The merged model is prompted as the instruct model is: its chat template and generation_config.json
come from the input that has one, from `chat_template_from` (instruct by default) where both have one
and they differ; the manifest says which, and the vocabulary stays the one the rows were merged for."""

import json

import pytest
from helpers.models import tiny_model_copy
from test_merge import merge_cfg
from transformers import AutoTokenizer

from chipadapt.errors import ChipadaptError
from chipadapt.merge.run import run

INSTRUCT_TEMPLATE = "INSTRUCT {% for m in messages %}{{ m['content'] }}{% endfor %}"
CHIP_TEMPLATE = "CHIP {% for m in messages %}{{ m['content'] }}{% endfor %}"


def set_template(folder, template: str | None) -> None:
    """`template` as transformers 5 saves it (chat_template.jinja), None: the folder has none."""
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)


def set_generation_config(folder, values: dict | None) -> None:
    path = folder / "generation_config.json"
    path.unlink(missing_ok=True)
    if values is not None:
        path.write_text(json.dumps(values))


@pytest.fixture
def pair(tmp_path):
    """(chip, instruct): copies of the tiny model, the instruct one with its own template and generation config."""
    chip, instruct = tiny_model_copy(tmp_path, "chip"), tiny_model_copy(tmp_path, "instruct")
    set_template(instruct, INSTRUCT_TEMPLATE)
    set_generation_config(instruct, {"bos_token_id": 1, "eos_token_id": [2, 3], "temperature": 0.7, "do_sample": True})
    return chip, instruct


def merged(tmp_path, chip, instruct, extra=()):
    out = tmp_path / "merged"
    run(merge_cfg("chipalign", chip, instruct, out, lam=0.5, extra=list(extra)))
    return out, json.loads((out / "merge_manifest.json").read_text())["summary"]


def test_a_chip_model_without_template_or_generation_config_gets_the_instruct_models(tmp_path, pair):
    chip, instruct = pair
    set_template(chip, None)  # ChipNeMo's case: DAPT of a base model
    set_generation_config(chip, None)
    out, summary = merged(tmp_path, chip, instruct)
    assert AutoTokenizer.from_pretrained(out).chat_template == INSTRUCT_TEMPLATE
    # transformers 4.x reads the template from tokenizer_config.json
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == INSTRUCT_TEMPLATE
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2, 3]
    assert summary["chat_template"] == {"from": "models.instruct", "why": "only models.instruct has one"}
    assert summary["generation_config"]["from"] == "models.instruct"
    # The tokenizer (vocabulary) stays the one carried for the rows: the chip model's.
    assert (out / "tokenizer.json").read_bytes() == (chip / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("prefer", [None, "instruct", "chip"])
def test_templates_that_differ_are_taken_from_chat_template_from(tmp_path, pair, prefer):
    chip, instruct = pair
    set_template(chip, CHIP_TEMPLATE)
    out, summary = merged(tmp_path, chip, instruct, [f"merge.chat_template_from={prefer}"] if prefer else [])
    taken = prefer or "instruct"  # conf/merge.yaml's default
    expected = {"instruct": INSTRUCT_TEMPLATE, "chip": CHIP_TEMPLATE}[taken]
    assert AutoTokenizer.from_pretrained(out).chat_template == expected
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == expected
    assert summary["chat_template"]["from"] == f"models.{taken}"
    assert f"merge.chat_template_from={taken}" in summary["chat_template"]["why"]
    temperature = json.loads((out / "generation_config.json").read_text()).get("temperature")
    assert temperature == (0.7 if taken == "instruct" else None)


def test_an_unknown_chat_template_from_is_refused_before_writing(tmp_path, pair):
    chip, instruct = pair
    with pytest.raises(ChipadaptError, match="merge.chat_template_from: .base. is not one of instruct, chip"):
        merged(tmp_path, chip, instruct, ["merge.chat_template_from=base"])
    assert not (tmp_path / "merged").exists()
