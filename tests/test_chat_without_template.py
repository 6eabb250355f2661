"""chat=True on a tokenizer with no chat template: prompts are given raw, which is said once naming the
model folder, and results record what was used (chat false), not what was asked."""

import logging
from types import SimpleNamespace

from conftest import SHARED_DATA, write_jsonl

from chipadapt.models import text_generation

ROW = {
    "key": 1,
    "prompt": "Write two sentences.",
    "instruction_id_list": ["length_constraints:number_sentences"],
    "kwargs": [{"relation": "less than", "num_sentences": 3}],
}


def no_template(folder: str):
    return SimpleNamespace(chat_template=None, name_or_path=folder)


def test_no_template_is_not_chat_and_is_said_once_naming_the_folder(caplog, monkeypatch):
    from chipadapt.models.text_generation import uses_chat_template

    monkeypatch.setattr(text_generation, "_WARNED_NO_TEMPLATE", set())
    with caplog.at_level(logging.WARNING, logger=text_generation.__name__):
        used = [uses_chat_template(no_template("/models/dapt"), True) for _ in range(3)]
    assert used == [False] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("/models/dapt: chat was asked for")
    assert uses_chat_template(SimpleNamespace(chat_template="{{ x }}", name_or_path="m"), True) is True
    assert uses_chat_template(SimpleNamespace(chat_template="{{ x }}", name_or_path="m"), False) is False


def test_ifeval_records_chat_false_when_the_tokenizer_has_no_template(tmp_path, monkeypatch):
    from chipadapt.eval.tasks import ifeval

    asked = []

    def fake_generate(model, tokenizer, prompts, *args, chat, **kwargs):
        asked.append(chat)
        return ["One. Two."] * len(prompts)

    monkeypatch.setattr(ifeval, "generate", fake_generate)
    nltk = SHARED_DATA / "ifeval" / "nltk_data" if SHARED_DATA.is_dir() else tmp_path
    task = ifeval.IFEvalTask(
        str(write_jsonl(tmp_path / "i.jsonl", [ROW])),
        str(nltk),
        limit=None,
        max_new_tokens=8,
        batch_size=1,
        preset="chipadapt",
        chat=True,
    )
    results = task.run(None, no_template("/models/dapt"))
    assert results["chat"] is False and asked == [False]
    assert results["chat_asked"] == "no template: raw prompts"
    with_template = task.run(None, SimpleNamespace(chat_template="{{ x }}", name_or_path="m"))
    assert with_template["chat"] is True and "chat_asked" not in with_template
