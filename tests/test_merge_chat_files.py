"""The merged model is prompted as the instruct model is: its chat template and generation_config.json
come from the input that has one, from `chat_template_from` (instruct by default) where both have one
and they differ; the manifest says which, and the vocabulary stays the one the rows were merged for."""

import json
from types import SimpleNamespace

import pytest
from helpers.models import tiny_model_copy
from test_merge import merge_cfg
from transformers import AutoTokenizer

from chipadapt.errors import ChipadaptError
from chipadapt.merge.chat_files import chat_template_of, take_chat_files
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


def _input(tmp_path, name: str, template: str | None, generation: dict | None) -> SimpleNamespace:
    """A model folder holding only the chat files (take_chat_files reads no weights)."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text(json.dumps({}))
    set_template(folder, template)
    set_generation_config(folder, generation)
    return SimpleNamespace(key=f"models.{name}", folder=folder)


def _taken(tmp_path, copied_from, chip, instruct, prefer, base=None) -> tuple[dict, str, dict]:
    """take_chat_files with auto into an output holding `copied_from`'s files: (chosen, template, generation)."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (copied_from.folder / name).is_file():
            (out / name).write_bytes((copied_from.folder / name).read_bytes())
    chosen = take_chat_files(out, copied_from, chip, instruct, prefer, "auto", base)
    return chosen, chat_template_of(out), json.loads((out / "generation_config.json").read_text())


def test_auto_takes_generation_config_from_the_input_it_took_the_template_from(tmp_path):
    # auto takes the instruct template (2 of 3); chat_template_from=chip would have given the chip
    # model's generation_config.json, whose eos the instruct template never writes.
    chip = _input(tmp_path, "chip", CHIP_TEMPLATE, {"eos_token_id": 2})
    instruct = _input(tmp_path, "instruct", INSTRUCT_TEMPLATE, {"eos_token_id": [2, 32000]})
    base = _input(tmp_path, "base", INSTRUCT_TEMPLATE, None)
    chosen, template, generation = _taken(tmp_path, chip, chip, instruct, "chip", base)
    assert template == INSTRUCT_TEMPLATE and generation == {"eos_token_id": [2, 32000]}
    assert chosen["generation_config"] == {
        "from": "models.instruct",
        "why": "the input merge.chat_template=auto took the template from",
    }


def test_auto_keeps_chat_template_from_for_generation_config_where_its_input_has_none(tmp_path):
    chip = _input(tmp_path, "chip", CHIP_TEMPLATE, {"eos_token_id": 2})
    instruct = _input(tmp_path, "instruct", INSTRUCT_TEMPLATE, {"eos_token_id": [2, 32000]})
    base = _input(tmp_path, "base", INSTRUCT_TEMPLATE, None)
    set_generation_config(instruct.folder, None)
    chosen, template, generation = _taken(tmp_path, chip, chip, instruct, "instruct", base)
    assert template == INSTRUCT_TEMPLATE and generation == {"eos_token_id": 2}
    assert chosen["generation_config"] == {"from": "models.chip", "why": "only models.chip has one"}


def test_a_tie_under_auto_takes_the_chip_models_template_and_generation_config(tmp_path):
    # The reviewer's case: template from chip (the tie's first), generation_config.json from instruct.
    chip = _input(tmp_path, "chip", CHIP_TEMPLATE, {"eos_token_id": 2})
    instruct = _input(tmp_path, "instruct", INSTRUCT_TEMPLATE, {"eos_token_id": [2, 32000]})
    chosen, template, generation = _taken(tmp_path, chip, chip, instruct, "instruct")
    assert template == CHIP_TEMPLATE and generation == {"eos_token_id": 2}
    assert chosen["chat_template"] == {
        "from": "models.chip",
        "why": "merge.chat_template=auto: a tie: the first of chip, instruct, base (1 of 2 inputs each)",
    }
    assert chosen["generation_config"]["from"] == "models.chip"


def test_auto_takes_a_template_several_inputs_share_from_chat_template_from(tmp_path):
    # chip and instruct share the template: it came from the chip model (the first holding it), and its
    # generation_config.json with it, whatever chat_template_from said.
    chip = _input(tmp_path, "chip", INSTRUCT_TEMPLATE, {"eos_token_id": 2})
    instruct = _input(tmp_path, "instruct", INSTRUCT_TEMPLATE, {"eos_token_id": [2, 32000], "top_p": 0.9})
    chosen, template, generation = _taken(tmp_path, chip, chip, instruct, "instruct")
    assert template == INSTRUCT_TEMPLATE and generation == {"eos_token_id": [2, 32000], "top_p": 0.9}
    assert chosen["chat_template"]["from"] == "models.instruct"
    assert chosen["chat_template"]["why"].endswith("; merge.chat_template_from=instruct among the inputs that have it")
    assert chosen["generation_config"] == {
        "from": "models.instruct",
        "why": "the input merge.chat_template=auto took the template from",
    }


def test_auto_takes_the_first_input_sharing_the_template_where_chat_template_from_holds_another(tmp_path):
    chip = _input(tmp_path, "chip", CHIP_TEMPLATE, {"eos_token_id": 7})
    instruct = _input(tmp_path, "instruct", INSTRUCT_TEMPLATE, {"eos_token_id": [2, 32000]})
    base = _input(tmp_path, "base", INSTRUCT_TEMPLATE, {"eos_token_id": 2})
    chosen, template, generation = _taken(tmp_path, chip, chip, instruct, "chip", base)
    assert template == INSTRUCT_TEMPLATE and generation == {"eos_token_id": [2, 32000]}
    assert chosen["chat_template"] == {
        "from": "models.instruct",
        "why": "merge.chat_template=auto: the most common of the inputs' (2 of 3)",
    }
    assert chosen["generation_config"]["from"] == "models.instruct"


def test_auto_takes_generation_config_from_another_input_sharing_the_template(tmp_path):
    # instruct's template is taken but it has no generation_config.json: the base model holds the same
    # template and one; chat_template_from=chip gave the chip model's, whose eos that template never writes.
    chip = _input(tmp_path, "chip", CHIP_TEMPLATE, {"eos_token_id": 7})
    instruct = _input(tmp_path, "instruct", INSTRUCT_TEMPLATE, None)
    base = _input(tmp_path, "base", INSTRUCT_TEMPLATE, {"eos_token_id": [2, 32000]})
    chosen, template, generation = _taken(tmp_path, chip, chip, instruct, "chip", base)
    assert template == INSTRUCT_TEMPLATE and generation == {"eos_token_id": [2, 32000]}
    assert chosen["chat_template"]["from"] == "models.instruct"
    assert chosen["generation_config"] == {
        "from": "models.base",
        "why": "it holds the template merge.chat_template=auto took, as models.instruct does, which has no "
        "generation_config.json",
    }


def test_a_chat_template_that_is_not_utf8_is_named_in_one_line(tmp_path):
    (tmp_path / "chat_template.jinja").write_bytes(b"{% for m in messages %}\xff{% endfor %}")  # Latin-1, say
    with pytest.raises(ChipadaptError, match=r"chat_template\.jinja: not a readable UTF-8 chat template"):
        chat_template_of(tmp_path)
