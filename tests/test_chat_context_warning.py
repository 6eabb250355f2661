"""chat.py warns once, at start, when its system prompt (with RAG passages) is longer than the model's context
leaves beside the reply: before, every question was refused ("this question takes N prompt tokens") or had its
passages cut, with nothing naming the configuration as the cause (bootstrap warns of its prompts)."""

import logging

from omegaconf import OmegaConf

from chipadapt.chat import ChatSession
from chipadapt.retrieval.rag import RAG_TEMPLATE


class _Tokens:
    """One token a character."""

    def __call__(self, text, add_special_tokens=False):
        return type("E", (), {"input_ids": list(range(len(text)))})()


class _Loaded:
    def __init__(self, context: int | None):
        config = type("C", (), {"max_position_embeddings": context})()
        self.folder, self.model, self.tokenizer = "model", type("M", (), {"config": config})(), _Tokens()


class _Template:
    def __init__(self, tokenizer):
        pass

    def prompt(self, messages, attributes):
        return "".join(m["content"] for m in messages)


class _Retriever:
    def index(self, passages):
        self.passages = passages


def session(monkeypatch, context, system, max_new_tokens=20, retrieval=None):
    """A ChatSession built by its own __init__, the model load and template stubbed (one token a character)."""
    import chipadapt.chat_session as chat_session

    monkeypatch.setattr(chat_session, "resolve_model_folder", lambda model: "model")
    monkeypatch.setattr(chat_session, "load_for_inference", lambda folder, *a: _Loaded(context))
    monkeypatch.setattr(chat_session, "steering_template", lambda template, *a, **k: template)
    monkeypatch.setattr(chat_session, "instantiate", lambda template: _Template)
    monkeypatch.setattr(chat_session, "recorded_attribute_order", lambda folder: None)
    cfg = {
        "model": {"dtype": "float32", "attn_implementation": "sdpa"},
        "template": {},
        "generate": {"system_prompt": system, "attributes": None, "max_new_tokens": max_new_tokens},
        "retrieval": retrieval,
    }
    if retrieval:
        import chipadapt.retrieval.build as build

        monkeypatch.setattr(build, "retrieval_inputs", lambda *a: [])
        monkeypatch.setattr(build, "check_index_dir", lambda *a: None)
        monkeypatch.setattr(build, "load_passages", lambda *a: [])
        monkeypatch.setattr(build, "make_retrievers", lambda *a, **k: {"bm25": _Retriever()})
    return ChatSession(OmegaConf.create(cfg))


def warnings(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "prompt tokens" in r.getMessage()
    ]


def test_a_system_prompt_past_the_context_is_warned_of_once_at_start(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        chat = session(monkeypatch, context=100, system="s" * 90)
    # 90 characters of system prompt; 100 positions less 20 for the reply leave 80.
    assert warnings(caplog) == [
        "generate.system_prompt takes 90 prompt tokens, more than the 80 tokens the model's context of 100 leaves "
        "beside a reply (generate.max_new_tokens=20): every question will be refused; shorten it (or lower "
        "generate.max_new_tokens below 10)"
    ]
    caplog.clear()
    chat.reset()
    assert chat.prompt_tokens([{"role": "user", "content": "hi"}]) == 92 and not warnings(caplog)


def test_a_prompt_that_fits_says_nothing(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        session(monkeypatch, context=100, system="s" * 70)
        session(monkeypatch, context=None, system="s" * 10_000)  # no known context: nothing to fit
    assert not warnings(caplog)


def test_rag_passages_that_do_not_fit_beside_the_system_prompt_are_warned_of(monkeypatch, caplog):
    retrieval = {"use": "bm25", "top_k": 2, "budget_tokens": 1024, "dense": {}, "build": {}}
    frame = len(RAG_TEMPLATE.format(context="", question=""))
    with caplog.at_level(logging.WARNING):
        session(monkeypatch, context=8192, system="s" * 100, max_new_tokens=256, retrieval=retrieval)
    assert not warnings(caplog)  # 100 + frame + 1,024 + 16 fits in 8,192 - 256
    with caplog.at_level(logging.WARNING):
        session(monkeypatch, context=1024, system="s" * 100, max_new_tokens=256, retrieval=retrieval)
    (said,) = warnings(caplog)
    assert said.startswith(
        "generate.system_prompt with retrieval.budget_tokens=1024 of passages (top_k=2) takes "
        f"{100 + frame + 1024 + 16} prompt tokens, more than the 768 tokens the model's context of 1024 leaves"
    )
    assert f"cut to at most {768 - 100 - frame - 16} tokens" in said


def test_a_max_new_tokens_past_half_the_context_names_the_half_it_keeps(monkeypatch, caplog):
    # max_new_tokens=80 of a 100-position context: half the context, 50 positions, is kept for the reply.
    with caplog.at_level(logging.WARNING):
        session(monkeypatch, context=100, system="s" * 60, max_new_tokens=80)
    assert warnings(caplog) == [
        "generate.system_prompt takes 60 prompt tokens, more than the 50 tokens the model's context of 100 leaves "
        "beside a reply (half the context, 50 tokens: generate.max_new_tokens=80 asks for more): every question "
        "will be refused; shorten it (or lower generate.max_new_tokens below 40)"
    ]
    caplog.clear()
    retrieval = {"use": "bm25", "top_k": 2, "budget_tokens": 1024, "dense": {}, "build": {}}
    with caplog.at_level(logging.WARNING):
        session(monkeypatch, context=1024, system="s" * 100, max_new_tokens=4096, retrieval=retrieval)
    (said,) = warnings(caplog)
    assert "more than the 512 tokens the model's context of 1024 leaves beside a reply (half the context, 512 " in said
    assert said.endswith(
        "lower retrieval.budget_tokens or generate.max_new_tokens below 512, or shorten the system prompt"
    )


def test_a_system_prompt_as_long_as_the_context_is_told_to_be_shortened_alone(monkeypatch, caplog):
    # No reply length makes room for a 120-token prompt in 100 positions: lowering it is not offered.
    with caplog.at_level(logging.WARNING):
        session(monkeypatch, context=100, system="s" * 120, max_new_tokens=80)
    (said,) = warnings(caplog)
    assert said.endswith("every question will be refused; shorten it")
