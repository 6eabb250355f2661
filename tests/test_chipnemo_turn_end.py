"""A model trained in ChipNeMo's chat format learns to end its reply, and every generator stops there.
Before, the template ended a reply with "\\n" alone: no end of turn was learned (600 SFT steps, then
80 of 80 tokens written into garbage), and nothing stopped on it."""

import io
from pathlib import Path

import pytest
from helpers.models import tiny_llama
from hydra.utils import instantiate
from omegaconf import OmegaConf

from chipadapt.data.chat_templates import StringTemplate, tokenize_with_labels
from chipadapt.data.sft_batches import collate_padded
from chipadapt.errors import ChipadaptError

ROOT = Path(__file__).resolve().parents[1]
QA = [
    {"role": "user", "content": "What fixes a hold violation?"},
    {"role": "assistant", "content": "Delay on the data path."},
    {"role": "user", "content": "And setup?"},
    {"role": "assistant", "content": "Upsize the cells."},
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"), num_layers=1, max_position_embeddings=256)


@pytest.fixture(scope="module")
def tokenizer(folder):
    from chipadapt.models.hf_folder import load_tokenizer

    return load_tokenizer(folder)


def chipnemo(tokenizer) -> StringTemplate:
    """The template as train.py and chat.py build it from conf/data/template/chipnemo.yaml."""
    return instantiate(OmegaConf.load(ROOT / "conf/data/template/chipnemo.yaml"))(tokenizer=tokenizer)


def test_every_reply_of_an_sft_batch_ends_with_a_learned_end_of_sequence_token(tokenizer):
    ids, labels = tokenize_with_labels(tokenizer, chipnemo(tokenizer).render(QA), None)
    batch = collate_padded([(ids, labels)], tokenizer.pad_token_id)
    learned = batch["labels"][0][batch["labels"][0] != -100].tolist()
    eos = tokenizer.eos_token_id
    assert learned.count(eos) == 2  # one per reply, each learned right after it
    first, second = tokenizer.decode(learned[: learned.index(eos)]), learned[learned.index(eos) + 1 :]
    assert first == "Delay on the data path.\n"
    assert tokenizer.decode(second[:-1]) == "Upsize the cells.\n" and second[-1] == eos


def test_the_saved_chat_template_ends_replies_as_training_did(tokenizer):
    template = chipnemo(tokenizer)
    tokenizer.chat_template = template.as_jinja()
    assert tokenizer.apply_chat_template(QA, tokenize=False) == template.render(QA).text
    assert f"Delay on the data path.\n{tokenizer.eos_token}<extra_id_1>User" in template.render(QA).text


def test_a_template_ending_on_the_eos_token_needs_a_tokenizer_that_has_one():
    settings = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/data/template/chipnemo.yaml"))
    settings = {k: v for k, v in settings.items() if not k.startswith("_")}
    with pytest.raises(ChipadaptError, match=r"^data.template.assistant_end: .* no end-of-sequence token"):
        StringTemplate(**settings, tokenizer=None)


class EmitsEosAfter:
    """A forward hook on the LM head: after `n` new tokens (one head call each), the end-of-sequence
    token wins (the model has learned to end its turn), then the filler again."""

    def __init__(self, n: int, eos: int, filler: int):
        self.n, self.eos, self.filler, self.generated = n, eos, filler, 0

    def __call__(self, module, inputs, logits):
        logits = logits.clone()
        logits[..., :] = 0.0
        logits[..., self.filler] = 10.0  # another token until then
        if self.generated == self.n:  # once: a generator that does not stop on it writes on
            logits[..., self.eos] = 100.0
        self.generated += 1
        return logits


def filler(tokenizer) -> int:
    return tokenizer(" hold", add_special_tokens=False).input_ids[0]


def forced_model(folder, tokenizer, n: int):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    # A folder whose config.json and generation_config.json do not name the tokenizer's end of sequence
    # (a base model's, whose tokenizer gained another): only the tokenizer says where a reply ends.
    model.config.eos_token_id = model.generation_config.eos_token_id = None
    hook = EmitsEosAfter(n, tokenizer.eos_token_id, filler(tokenizer))
    model.get_output_embeddings().register_forward_hook(hook)
    return model


def test_chat_stops_on_the_end_of_sequence_token_the_model_writes(folder, tokenizer):
    from chipadapt.chat import ChatSession

    session = ChatSession.__new__(ChatSession)
    session.tokenizer, session.template, session.retriever = tokenizer, chipnemo(tokenizer), None
    session.cfg = OmegaConf.create({"generate": {"temperature": 0, "top_p": 1, "max_new_tokens": 40}})
    session.attributes, session.order, session.messages, session.reply_attributes = {}, [], [], []
    session.context, session.window, session.system = None, 0, None
    session.model = forced_model(folder, tokenizer, 3)
    answer = session.reply(QA[0]["content"], out=io.StringIO())
    assert answer == tokenizer.decode([filler(tokenizer)] * 3).strip()  # before: 40 tokens


def test_evaluate_generation_stops_on_the_end_of_sequence_token_when_sampling(folder, tokenizer):
    from chipadapt.models.text_generation import generate

    prompt = chipnemo(tokenizer).prompt([QA[0]])
    model = forced_model(folder, tokenizer, 2)
    [answer] = generate(model, tokenizer, [prompt], 1, 40, chat=False, temperature=1.0, top_p=1.0)
    assert answer == tokenizer.decode([filler(tokenizer)] * 2)  # before: 40 tokens


def test_a_system_prompt_is_the_system_turn_of_every_prompt(tokenizer):
    from chipadapt.chat import ChatSession

    session = ChatSession.__new__(ChatSession)
    session.template, session.attributes, session.order = chipnemo(tokenizer), {}, []
    session.system = "You review Verilog."
    assert session.prompt_text([QA[0]]).startswith("<extra_id_0>System\nYou review Verilog.\n<extra_id_1>User")
    session.system = None
    assert "A chat between a curious user" in session.prompt_text([QA[0]])  # the template's default


def test_steerlm_generation_stops_on_the_end_of_sequence_token(folder, tokenizer):
    from chipadapt.steerlm.generate import generate_with_attributes, sample_with_attributes

    template, order = chipnemo(tokenizer), ["quality"]
    answer = generate_with_attributes(forced_model(folder, tokenizer, 2), tokenizer, template, [QA[0]], {}, order, 40)
    assert answer == tokenizer.decode([filler(tokenizer)] * 2)  # before: 40 tokens (bootstrap's replies too)
    [[sampled]], _ = sample_with_attributes(
        forced_model(folder, tokenizer, 3), tokenizer, template, [[QA[0]]], [{}], order, 1, 40, 0.0, 1
    )
    assert sampled == tokenizer.decode([filler(tokenizer)] * 3)
