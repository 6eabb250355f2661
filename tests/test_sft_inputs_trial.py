"""SFT / SteerLM inputs a user trial got wrong: records left out without a word, misspelt source
settings, conversations opened by the assistant, folders and config keys in messages, attribute
values off SteerLM's 0-4 scale. Each bad input is one ChipadaptError naming file:line or the key."""

import logging

import pytest
from conftest import compose, write_jsonl

from chipadapt.data.conversations import read_conversations
from chipadapt.errors import ChipadaptError

QA = [{"role": "user", "content": "What is a latch?"}, {"role": "assistant", "content": "A level-sensitive cell."}]


class CharTokenizer:
    """One token per character, with offsets: enough for StringTemplate rendering and label masks."""

    pad_token_id, eos_token_id, chat_template = 0, 1, None
    eos_token = "\x01"  # one character, as ChipNeMo's template ends each reply with it (conf/data/template)

    def convert_tokens_to_ids(self, token):
        return 1

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        return Encoding(
            input_ids=[2 + ord(c) % 500 for c in text], offset_mapping=[(i, i + 1) for i in range(len(text))]
        )


class Encoding(dict):
    __getattr__ = dict.__getitem__  # `encoded.input_ids` as on a BatchEncoding


class AlternatingOnlyTokenizer(CharTokenizer):
    """A chat template like Llama 2's, which raises unless user and assistant turns alternate."""

    chat_template = "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        from jinja2.exceptions import TemplateError

        raise TemplateError("Conversation roles must alternate user/assistant/user/assistant/...")


def sft_data(tmp_path, overrides=(), tokenizer=None):
    """The SFT DataModule of `data=sft_sample`, its sources replaced by the test's."""
    from hydra.utils import instantiate

    cfg = compose(
        ["stage=sft", "model=tiny", "data=sft_sample", "data/template=chipnemo", "data.seq_len=512", *overrides],
        tmp_path / "out",
    )
    return instantiate(cfg.stage.datamodule)(tokenizer=tokenizer or CharTokenizer())


def test_records_without_an_assistant_turn_are_counted_per_source_and_warned_about(tmp_path, caplog):
    rows = [{"messages": QA}] * 8 + [{"messages": [QA[0]]}, {"messages": []}]
    path = write_jsonl(tmp_path / "chat_noassistant.jsonl", rows)
    with caplog.at_level(logging.WARNING):
        assert len(read_conversations("mine", {"path": str(path)})) == 8
    assert f"data.sources.mine: left out 2 records with no assistant turn, nothing to learn (first: {path}:9)" in (
        caplog.text
    )
    data = sft_data(
        tmp_path, ["data.sources.kestrel_qa=null", "data.val_sources=null", f"+data.sources.mine.path={path}"]
    )
    data.setup()
    (source,) = data.stats["sources"]
    assert (source["name"], source["conversations"], source["no_answer"]) == ("mine", 8, 2)
    assert "no assistant turn" in [c.header for c in data.summary().columns]


def test_a_misspelt_source_setting_is_refused_naming_it_and_the_known_ones(tmp_path):
    path = write_jsonl(tmp_path / "chat_good.jsonl", [{"messages": QA}])
    with pytest.raises(ChipadaptError, match=r"^data.sources.mine.wieght: unknown source setting \(known: path, "):
        read_conversations("mine", {"path": str(path), "wieght": 5})
    data = sft_data(tmp_path, [f"+data.sources.mine.path={path}", "+data.sources.mine.wieght=5"])
    with pytest.raises(ChipadaptError, match=r"data.sources.mine.wieght: unknown source setting .*weight, epochs"):
        data.setup()
    with pytest.raises(ChipadaptError, match=r"^data.sources.mine.weight: 'five' is not a non-negative number"):
        read_conversations("mine", {"path": str(path), "weight": "five"})
    # a weight that is spelt right is used: 3 copies of the one conversation
    data = sft_data(
        tmp_path, ["data.sources.kestrel_qa=null", f"+data.sources.mine.path={path}", "+data.sources.mine.weight=3"]
    )
    data.setup()
    assert data.stats["sources"][0]["blended"] == 3


def test_a_conversation_opened_by_the_assistant_is_refused_naming_file_and_line(tmp_path):
    greeting = {"role": "assistant", "content": "Hello, I am the chip assistant."}
    path = write_jsonl(
        tmp_path / "chat_assistant_first.jsonl",
        [{"messages": QA}, {"messages": [{"role": "system", "content": "Be brief."}, greeting, *QA]}],
    )
    with pytest.raises(ChipadaptError, match=rf"^{path}:2: the conversation starts with an assistant turn"):
        read_conversations("mine", {"path": str(path)})


def test_a_chat_template_that_refuses_a_conversation_names_its_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "twice.jsonl", [{"messages": [QA[0], QA[0], QA[1]]}])
    data = sft_data(
        tmp_path,
        [
            "data.sources.kestrel_qa=null",
            "data.val_sources=null",
            f"+data.sources.mine.path={path}",
            "data/template=model",
        ],
        tokenizer=AlternatingOnlyTokenizer(),
    )
    with pytest.raises(ChipadaptError, match=rf"^{path}:1: the chat template cannot render .*roles must alternate"):
        data.setup()


def test_source_errors_name_the_data_key_and_say_what_a_folder_needs(tmp_path):
    folder = tmp_path / "sft"
    folder.mkdir()
    write_jsonl(folder / "part-00000.jsonl", [{"messages": QA}])
    with pytest.raises(
        ChipadaptError,
        match=rf"^data.sources.mine.path: {folder} is a folder; a chat source is one JSONL file .*"
        r"set data.sources.mine.format=hf\)$",
    ):
        read_conversations("mine", {"path": str(folder)})
    with pytest.raises(ChipadaptError, match=rf"^data.sources.mine.path: {tmp_path}/nope.jsonl does not exist$"):
        read_conversations("mine", {"path": str(tmp_path / "nope.jsonl")})
    with pytest.raises(ChipadaptError, match=r"^data.sources.mine.format: 'sharegpt' is not one of chat, prompt_"):
        read_conversations("mine", {"path": str(folder), "format": "sharegpt"})
    # a validation source and another stage's input are named by their own keys
    data = sft_data(tmp_path, [f"data.val_sources.kestrel_heldout.path={tmp_path}/gone.jsonl"])
    with pytest.raises(ChipadaptError, match=r"^data.val_sources.kestrel_heldout.path: .*gone.jsonl does not exist"):
        data.setup()
    with pytest.raises(ChipadaptError, match=r"^annotate.input.path: .*gone.jsonl does not exist"):
        read_conversations("annotate.input", {"path": str(tmp_path / "gone.jsonl")})


@pytest.mark.parametrize(
    "record, message",
    [
        ({"attributes": {"quality": 9}}, r":2: attribute 'quality' is 9, not a number on SteerLM's 0-4 scale"),
        ({"attributes": {"humor": "lots"}}, r":2: attribute 'humor' is 'lots', not a number"),
        ({"steerlm_attributes": {"toxicity": -1}}, r":2: attribute 'toxicity' is -1, not a number"),
        ({"attributes": {"quality": True}}, r":2: attribute 'quality' is True, not a number"),
        ({"helpfulness": 5}, r":2: attribute 'helpfulness' is 5, not a number"),
        ({"attributes": [4, 0]}, r":2: 'attributes' must be an object of attribute: 0-4"),
    ],
)
def test_attributes_off_steerlms_scale_are_refused_naming_line_and_attribute(tmp_path, record, message):
    path = write_jsonl(tmp_path / "chat_badattr.jsonl", [{"messages": QA}, {"messages": QA, **record}])
    with pytest.raises(ChipadaptError, match=rf"^{path}{message}"):
        read_conversations("mine", {"path": str(path)})


def test_attributes_on_the_scale_are_kept_and_null_means_unlabelled(tmp_path):
    labels = {"quality": 4, "humor": 0, "creativity": 2.5, "toxicity": None}
    chat = write_jsonl(tmp_path / "chat_attr.jsonl", [{"messages": QA, "attributes": labels}])
    assert read_conversations("mine", {"path": str(chat)})[0].attributes == {
        "quality": 4,
        "humor": 0,
        "creativity": 2.5,
    }
    helpsteer = write_jsonl(
        tmp_path / "hs.jsonl", [{"prompt": "p", "completion": "c", "helpfulness": 3, "verbosity": None}]
    )
    spec = {"path": str(helpsteer), "format": "prompt_completion"}
    assert read_conversations("hs", spec)[0].attributes == {"helpfulness": 3}


def test_the_attribute_model_counts_conversations_without_labels_and_skips_a_null_source(tmp_path, caplog):
    from hydra.utils import instantiate

    rows = [{"messages": QA, "attributes": {"quality": 3}}] * 3 + [{"messages": QA}] * 2
    path = write_jsonl(tmp_path / "labels.jsonl", rows)
    overrides = ["stage=attribute_model", "model=tiny", "data/template=chipnemo", "data.val_fraction=0.0"]
    cfg = compose([*overrides, "data.sources.oasst_labelled=null", f"+data.sources.mine.path={path}"], tmp_path)
    data = instantiate(cfg.stage.datamodule)(tokenizer=CharTokenizer())
    with caplog.at_level(logging.WARNING):
        data.setup()
    assert data.stats["train_conversations"] == 3 and data.stats["unlabelled"] == {"mine": 2}
    assert "left out, no label for any of quality, helpfulness, toxicity, humor, creativity: 2 of mine" in caplog.text
