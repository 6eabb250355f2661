"""What a new user's SFT on their own chat data ran into: a short run at lr 0 (a warm-up longer than the
run), a system message dropped mid-conversation, answers cut at seq_len without a word, misspelt
attribute names, roles not named in errors, dataset rows numbered from 0."""

import logging
from types import SimpleNamespace

import pytest
import torch
from conftest import compose, write_jsonl
from test_sft import CHIPNEMO as SFT_CHIPNEMO
from test_sft_inputs_trial import QA, CharTokenizer, sft_data

from chipadapt.data.chat_templates import ModelChatTemplate, StringTemplate
from chipadapt.data.conversations import read_conversations
from chipadapt.errors import ChipadaptError
from chipadapt.modules.optim import optimizers_for

CHIPNEMO = {**SFT_CHIPNEMO, "default_system": "Be helpful."}
LATER_SYSTEM = [
    {"role": "system", "content": "First system."},
    *QA,
    {"role": "system", "content": "Now answer in French."},
    {"role": "user", "content": "bye"},
    {"role": "assistant", "content": "au revoir"},
]


def only(data, name="mine"):
    (source,) = [s for s in data.stats["sources"] if s["name"] == name]
    return source


# --- 1. the warm-up fits the run, and no step runs at lr 0 -------------------------------------------


def scheduled_lrs(tmp_path, steps: int, overrides=(), stage="sft") -> list[float]:
    """The lr of each of a run's `steps` optimizer steps, under the stage's `optim` group."""
    optim = compose([f"stage={stage}", "model=tiny", *overrides], tmp_path).optim
    trainer = SimpleNamespace(estimated_stepping_batches=steps, is_global_zero=True, precision="32-true")
    configured = optimizers_for(torch.nn.Linear(2, 2), optim, trainer)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):  # Lightning steps an `interval: step` scheduler after each optimizer step
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("stage", ["sft", "retriever", "attribute_model"])
def test_a_warm_up_longer_than_the_run_is_capped_so_it_trains_at_its_lr(tmp_path, caplog, stage):
    optim = compose([f"stage={stage}", "model=tiny"], tmp_path).optim
    assert optim.scheduler.num_warmup_steps == 10  # adamw_cosine's
    with caplog.at_level(logging.WARNING):
        three = scheduled_lrs(tmp_path, 3, stage=stage)
    # before: 0, lr/10, lr/5 (a 10-step warm-up over 3 steps, the first at exactly 0)
    assert three == pytest.approx([optim.lr / 2, optim.lr, optim.lr / 2])
    assert (
        "optim.scheduler.num_warmup_steps=10 is more than half of the 3 steps this run takes: warming up "
        "over 1 step instead" in caplog.text
    )
    assert scheduled_lrs(tmp_path, 1, stage=stage) == [optim.lr]  # the trial's 1-step run: lr 0 before


def test_a_warm_up_that_fits_is_kept_and_starts_above_zero(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        lrs = scheduled_lrs(tmp_path, 40, ["optim.lr=1e-3"])
    assert "num_warmup_steps" not in caplog.text
    # NeMo's convention, not Hugging Face's: step i of a w-step warm-up at lr (i+1)/(w+1), so step 0 trains
    assert lrs[:11] == pytest.approx([1e-3 * (i + 1) / 11 for i in range(11)])
    assert max(lrs) == pytest.approx(1e-3) and lrs == sorted(lrs[:11]) + sorted(lrs[11:], reverse=True)
    assert 0 < lrs[-1] < 1e-5  # cosine to zero at the end
    assert scheduled_lrs(tmp_path, 4, ["optim.scheduler.num_warmup_steps=0"])[0] == pytest.approx(1e-5)


# --- 2. a system message after the first turn -------------------------------------------------------


class ChatMLTokenizer(CharTokenizer):
    """The tiny model's ChatML template (which renders a system message anywhere), rendered by jinja2."""

    from chipadapt.models.tiny import CHATML_TEMPLATE as chat_template

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        from jinja2 import Template

        return Template(self.chat_template).render(messages=messages, add_generation_prompt=add_generation_prompt)


def hf_tokenizer(chat_template: str):
    """A Hugging Face tokenizer (its own chat-template engine, with raise_exception) of one word."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"x": 0}, unk_token="x")))
    tok.chat_template = chat_template
    return tok


def test_a_later_system_message_is_refused_naming_file_line_and_turn(tmp_path):
    path = write_jsonl(tmp_path / "twosys.jsonl", [{"messages": QA}, {"messages": LATER_SYSTEM}])
    with pytest.raises(ChipadaptError, match=rf"^{path}:2: turn 4 is a system message after the conversation began; "):
        read_conversations("mine", {"path": str(path)})
    # both templates refuse rather than drop it (before: both rendered the first and dropped the later one)
    for template in (ModelChatTemplate(ChatMLTokenizer(), "Attributes: "), StringTemplate(**CHIPNEMO)):
        with pytest.raises(ChipadaptError, match=r"turn 4 is a system message"):
            template.render(LATER_SYSTEM)
        assert "First system." in template.render(LATER_SYSTEM[:3]).text  # a leading one is rendered


def test_the_saved_chipnemo_template_keeps_the_system_message_training_rendered(tmp_path):
    template = StringTemplate(**CHIPNEMO)
    tok = hf_tokenizer(template.as_jinja())
    assert tok.apply_chat_template(LATER_SYSTEM[:3], tokenize=False) == template.render(LATER_SYSTEM[:3]).text
    assert tok.apply_chat_template(QA, tokenize=False) == template.render(QA).text  # the default system
    # before: the saved template rendered the *last* system message while training rendered the first
    with pytest.raises(Exception, match=r"turn 4 is a system message"):
        tok.apply_chat_template(LATER_SYSTEM, tokenize=False)


# --- 3. answers cut at data.seq_len -----------------------------------------------------------------


def test_answers_cut_at_seq_len_are_counted_in_the_table_and_manifest_and_warned_once(tmp_path, caplog):
    long_answer = {"role": "assistant", "content": "A latch is level-sensitive. " * 20}  # 560 characters
    rows = [{"messages": QA}] * 3 + [{"messages": [QA[0], long_answer]}] * 2
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    data = sft_data(
        tmp_path,
        [
            "data.sources.kestrel_qa=null",
            "data.val_sources=null",
            f"+data.sources.mine.path={path}",
            "data.seq_len=300",
        ],
    )
    with caplog.at_level(logging.WARNING):
        data.setup()
    source = only(data)
    text = data.template.render([QA[0], long_answer]).text  # one token a character; the answer is last
    assert source["answers_cut"] == 2 and source["answer_tokens_cut"] == 2 * (len(text) - 300)
    assert source["too_long"] == 0 and source["train"] == 5  # still trained on: what fits is learned
    assert "answers cut" in [c.header for c in data.summary().columns]
    warnings = [r.getMessage() for r in caplog.records if "data.seq_len=300" in r.getMessage()]
    assert warnings == [
        f"data.seq_len=300 cuts the answers of 2 training conversations ({source['answer_tokens_cut']:,} "
        f"answer tokens not learned): 2 of data.sources.mine (first: {path}:4); raise data.seq_len to learn them whole"
    ]


# --- 4. attribute names outside data.attributes.order ----------------------------------------------


def test_misspelt_attribute_names_are_warned_about_naming_file_line_and_the_known_names(tmp_path, caplog):
    rows = [
        {"messages": QA, "attributes": {"quality": 4, "humor": 0}},
        {"messages": QA, "attributes": {"qualty": 3, "humour": 1}},
        {"messages": QA, "attributes": {"qualty": 2}},
    ]
    path = write_jsonl(tmp_path / "unkattr.jsonl", rows)
    steer = ["data.sources.kestrel_qa=null", "data.val_sources=null", f"+data.sources.mine.path={path}"]
    data = sft_data(tmp_path, [*steer, "data.attributes.use=true"])
    with caplog.at_level(logging.WARNING):
        data.setup()
    assert only(data)["unknown_attributes"] == {"humour": 1, "qualty": 2}
    warnings = [r.getMessage() for r in caplog.records if "attributes.order" in r.getMessage()]
    assert warnings == [
        f"data.sources.mine: 2 conversations carry attribute names outside data.attributes.order: humour, qualty "
        f"(first: {path}:2); SteerLM puts them into the prompt as they are, and chat.py warns about them as "
        "unfamiliar; fix the names or add them to data.attributes.order (it has: quality, helpfulness, "
        "correctness, coherence, complexity, verbosity, toxicity, humor, creativity)"
    ]
    # plain SFT puts no attributes into the prompt: nothing to warn about
    caplog.clear()
    data = sft_data(tmp_path, steer)
    with caplog.at_level(logging.WARNING):
        data.setup()
    assert "attributes.order" not in caplog.text and "unknown_attributes" not in only(data)


# --- 5. a role that is not system, user or assistant --------------------------------------------------


@pytest.mark.parametrize(
    "turn, message",
    [
        ({"role": "tool", "content": "42"}, r"turn 2 has role 'tool', not one of system, user, assistant$"),
        ({"role": "User", "content": "hi"}, r"turn 2 has role 'User', not one of system, user, assistant \(lower"),
        ({"role": "user"}, r"turn 2 \(user\) has no 'content'$"),
        ({"role": "user", "content": None}, r"turn 2 \(user\) has 'content' null, not a string$"),
        ({"role": "user", "content": ["a"]}, r"turn 2 \(user\) has 'content' a list, not a string$"),
        ("hello", r"turn 2 is 'hello', not an object with a role and content"),
    ],
)
def test_a_bad_turn_is_named_with_its_number_and_role(tmp_path, turn, message):
    path = write_jsonl(tmp_path / "badrole.jsonl", [{"messages": QA}, {"messages": [QA[0], turn, *QA]}])
    with pytest.raises(ChipadaptError, match=rf"^{path}:2: 'messages' {message}"):
        read_conversations("mine", {"path": str(path)})


def test_messages_that_are_not_a_list_say_what_they_are(tmp_path):
    path = write_jsonl(tmp_path / "notlist.jsonl", [{"messages": {"role": "user", "content": "hi"}}])
    with pytest.raises(ChipadaptError, match=rf"^{path}:1: 'messages' must be a list of turns, got a dict$"):
        read_conversations("mine", {"path": str(path)})


# --- 6. dataset rows numbered from 1, as JSONL lines and DAPT's dataset rows are ---------------------


def test_a_bad_dataset_row_is_numbered_from_1(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants as hub_constants
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    (tmp_path / "pc" / "data").mkdir(parents=True)
    pq.write_table(
        pa.table({"prompt": ["Write a NAND", "Write an OR"], "completion": [None, "assign y = a | b;"]}),
        tmp_path / "pc" / "data" / "train-00000-of-00001.parquet",
    )
    spec = {"path": str(tmp_path / "pc"), "format": "hf"}
    with pytest.raises(ChipadaptError, match=rf"^row 1 of {tmp_path}/pc \[train\]: needs string fields 'prompt'"):
        read_conversations("pc", spec)
