"""mergekit's `chat_template` in a recipe: `auto` takes the template most inputs have, a Jinja template
is the merged tokenizer's; a template name mergekit bundles (chatml, llama3) is refused, as chipadapt
carries none. Every merge writes the template it published into its mergekit_config.yml, which reads
back to the same template. Before, a recipe with the key was refused whatever its value, and a written
recipe left it out, so mergekit redid a linear merge with the chip model's template."""

import json

import pytest
import yaml
from helpers.models import tiny_model_copy
from test_merge import merge_cfg
from test_merge_chat_files import CHIP_TEMPLATE, INSTRUCT_TEMPLATE, set_template
from test_mergekit_config import merge_cfg_from
from test_mergekit_recipe_keys import slerp_recipe
from transformers import AutoTokenizer

from chipadapt.errors import ChipadaptError
from chipadapt.merge.chat_files import check_chat_template
from chipadapt.merge.mergekit_config import overrides_from_mergekit
from chipadapt.merge.run import run

GIVEN = "GIVEN {% for m in messages %}<{{ m['role'] }}>\n{{ m['content'] }}\\n{% endfor %}"


def test_values_chipadapt_cannot_honour_are_refused_in_one_line():
    for value in (None, "auto", GIVEN):
        check_chat_template(value)
    for value, said in (
        ("chatml", "names a template bundled with mergekit"),
        ("my_template", "is neither auto nor a Jinja chat template"),
        ("{% for m in messages %}{{ m }}", "not a Jinja template transformers can compile"),
        ({"default": GIVEN}, "is neither auto nor a Jinja chat template"),
    ):
        with pytest.raises(ChipadaptError, match=f"^merge.chat_template: .*{said}") as err:
            check_chat_template(value)
        assert "\n" not in str(err.value)


@pytest.fixture
def pair(tmp_path):
    """(chip, instruct): disposable tiny models with templates of their own."""
    chip, instruct = tiny_model_copy(tmp_path, "chip"), tiny_model_copy(tmp_path, "instruct")
    set_template(chip, CHIP_TEMPLATE)
    set_template(instruct, INSTRUCT_TEMPLATE)
    return chip, instruct


def recipe_file(tmp_path, recipe: dict):
    path = tmp_path / "recipe.yml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_recipes_jinja_template_is_the_merged_tokenizers_and_is_written_back(tmp_path, pair):
    chip, instruct = pair
    overrides = overrides_from_mergekit(recipe_file(tmp_path, slerp_recipe(chip, instruct, chat_template=GIVEN)))
    out = tmp_path / "merged"
    run(merge_cfg_from(overrides, out))
    assert AutoTokenizer.from_pretrained(out).chat_template == GIVEN
    summary = json.loads((out / "merge_manifest.json").read_text())["summary"]
    assert summary["chat_template"]["from"] == "merge.chat_template"
    written = out / "mergekit_config.yml"
    assert yaml.safe_load(written.read_text())["chat_template"] == GIVEN
    again = tmp_path / "again"
    run(merge_cfg_from(overrides_from_mergekit(written), again))
    assert AutoTokenizer.from_pretrained(again).chat_template == GIVEN


def test_auto_takes_the_template_most_inputs_have(tmp_path, pair):
    chip, instruct = pair
    base = tiny_model_copy(tmp_path, "base")
    set_template(base, "  " + CHIP_TEMPLATE + "\n")  # the same once stripped, as mergekit compares them
    out = tmp_path / "merged"
    run(merge_cfg("task_arithmetic", chip, instruct, out, lam=0.5, base=base, extra=["++merge.chat_template=auto"]))
    assert AutoTokenizer.from_pretrained(out).chat_template == CHIP_TEMPLATE
    summary = json.loads((out / "merge_manifest.json").read_text())["summary"]
    assert summary["chat_template"] == {
        "from": "models.chip",
        "why": "merge.chat_template=auto: the most common of the inputs' (2 of 3)",
    }
    assert yaml.safe_load((out / "mergekit_config.yml").read_text())["chat_template"] == "auto"


def test_a_merge_without_the_key_writes_the_template_it_published(tmp_path, pair):
    chip, instruct = pair
    out = tmp_path / "merged"
    run(merge_cfg("linear", chip, instruct, out, lam=0.5))  # mergekit's donor: the chip model
    assert AutoTokenizer.from_pretrained(out).chat_template == INSTRUCT_TEMPLATE
    assert yaml.safe_load((out / "mergekit_config.yml").read_text())["chat_template"] == INSTRUCT_TEMPLATE


def test_a_tie_under_auto_is_written_as_the_template_chosen(tmp_path, pair):
    # mergekit lists its models from a set: on a tie, `auto` there could publish either template.
    chip, instruct = pair
    out = tmp_path / "merged"
    run(merge_cfg("slerp", chip, instruct, out, lam=0.5, extra=["++merge.chat_template=auto"]))
    assert AutoTokenizer.from_pretrained(out).chat_template == CHIP_TEMPLATE
    summary = json.loads((out / "merge_manifest.json").read_text())["summary"]
    assert summary["chat_template"]["why"] == (
        "merge.chat_template=auto: a tie: the first of chip, instruct, base (1 of 2 inputs each)"
    )
    assert yaml.safe_load((out / "mergekit_config.yml").read_text())["chat_template"] == CHIP_TEMPLATE


def test_a_template_holding_an_interpolation_sign_arrives_as_written(tmp_path, pair):
    chip, instruct = pair
    template = "{% for m in messages %}${ {{ m['content'] }} } \\${x}{% endfor %}"
    overrides = overrides_from_mergekit(recipe_file(tmp_path, slerp_recipe(chip, instruct, chat_template=template)))
    out = tmp_path / "merged"
    run(merge_cfg_from(overrides, out))
    assert AutoTokenizer.from_pretrained(out).chat_template == template
    written = out / "mergekit_config.yml"
    assert yaml.safe_load(written.read_text())["chat_template"] == template
    again = tmp_path / "again"
    run(merge_cfg_from(overrides_from_mergekit(written), again))
    assert AutoTokenizer.from_pretrained(again).chat_template == template


def test_templates_are_still_checked_where_transformers_moves_its_compiler(monkeypatch, caplog):
    import transformers.utils.chat_template_utils as utils

    monkeypatch.delattr(utils, "_compile_jinja_template")
    check_chat_template(GIVEN)
    assert "checked by jinja2's sandbox instead" in caplog.text
    with pytest.raises(ChipadaptError, match="^merge.chat_template: jinja2's sandbox cannot compile it") as refused:
        check_chat_template("{% for m in messages %}{{ m }}")
    assert "transformers can compile" not in str(refused.value)


def test_a_compiler_whose_signature_changed_is_not_called(monkeypatch, caplog):
    import transformers.utils.chat_template_utils as utils

    def moved(template, tools):  # a release that asks for more than the template
        raise AssertionError("called")

    monkeypatch.setattr(utils, "_compile_jinja_template", moved)
    check_chat_template(GIVEN)
    assert "checked by jinja2's sandbox instead" in caplog.text and "(template, tools)" in caplog.text


def test_a_type_error_inside_transformers_compiler_is_not_taken_for_a_moved_one(monkeypatch):
    # Caught as a changed signature, it sent the template to jinja2's sandbox, which knows none of
    # transformers' own tags, and said the compiler had moved.
    import transformers.utils.chat_template_utils as utils

    def failing(chat_template):
        raise TypeError("inside the compiler")

    monkeypatch.setattr(utils, "_compile_jinja_template", failing)
    with pytest.raises(TypeError, match="inside the compiler"):
        check_chat_template(GIVEN)
