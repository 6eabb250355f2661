"""chat.py's ChatSession in process, on a fake model: Ctrl-C stops a streamed reply, a failing generate()
raises in the caller, and the prompt fits the model's context."""

import pytest


class _Encoded(dict):
    def to(self, device):
        return self


class _WordTokenizer:
    """Just enough of a tokenizer for TextIteratorStreamer: token i decodes to "w<i> "."""

    pad_token_id = eos_token_id = 0

    def __call__(self, text, **kwargs):
        import torch

        return _Encoded(input_ids=torch.tensor([[1, 2, 3]]))

    def decode(self, ids, **kwargs):
        return "".join(f"w{int(i)} " for i in ids)


class _SlowModel:
    """generate() streams a token every 20 ms until a stopping criterion says stop (or raises)."""

    device = "cpu"

    def __init__(self, on_token=None, fail: Exception | None = None):
        self.on_token, self.fail, self.generated = on_token, fail, 0

    def generate(self, input_ids, max_new_tokens, streamer, stopping_criteria, **kwargs):
        import time

        import torch

        if self.fail:
            raise self.fail
        streamer.put(input_ids)
        for i in range(max_new_tokens):
            if any(bool(criterion(input_ids, None)) for criterion in stopping_criteria):
                break
            streamer.put(torch.tensor([i]))
            self.generated += 1
            if self.on_token:
                self.on_token(i)
            time.sleep(0.02)
        streamer.end()


def handled(handler, timeout: float = 10.0) -> None:
    """Wait (in a worker thread) until the main thread has run the SIGINT handler that installs `handler`:
    signals sent without waiting can reach Python as one call on a loaded host."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while signal.getsignal(signal.SIGINT) is not handler:
        assert time.monotonic() < deadline, "the main thread never handled SIGINT"
        time.sleep(0.005)


def _session(model):
    import signal

    from omegaconf import OmegaConf

    from chipadapt.chat import ChatSession

    session = ChatSession.__new__(ChatSession)
    session.model, session.tokenizer, session.retriever = model, _WordTokenizer(), None
    session.template = type("T", (), {"prompt": staticmethod(lambda messages, attributes: "prompt")})()
    session.cfg = OmegaConf.create({"generate": {"temperature": 0, "top_p": 1, "max_new_tokens": 500}})
    session.attributes, session.order, session.messages, session.reply_attributes = {}, [], [], []
    session.context, session.window = None, 0  # a fake model: no context to fit
    # As chat.run sets it before the conversation; a test run started as a background job (`cmd &`)
    # inherits SIGINT ignored, and the tests check the handler is put back as it was.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return session


def test_ctrl_c_stops_the_reply_at_the_next_token_without_an_exception():
    import io
    import os
    import signal

    handlers = []

    def interrupt(i):
        handlers.append(signal.getsignal(signal.SIGINT))
        if i == 5:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: delivered to the main thread, in the streamer's wait
            handled(signal.default_int_handler)  # the first press puts the default back once it has run

    model = _SlowModel(on_token=interrupt)
    session = _session(model)
    out = io.StringIO()
    assert session.reply("What is a latch?", out=out) is None
    # While the reply streams, Ctrl-C has its own handler: no KeyboardInterrupt inside queue.get()'s locks.
    assert handlers[0] is not signal.default_int_handler
    assert out.getvalue().endswith("(reply stopped; not kept in the history)\n")
    assert model.generated == 6 and session.messages == []  # stopped at the first check after Ctrl-C
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C ends the program again
    session.model, session.cfg.generate.max_new_tokens = _SlowModel(), 30
    assert session.reply("And a flip-flop?", out=io.StringIO()) == " ".join(f"w{i}" for i in range(30))
    assert [m["role"] for m in session.messages] == ["user", "assistant"]


class _BadTokenTokenizer(_WordTokenizer):
    def decode(self, ids, **kwargs):
        if 7 in [int(i) for i in ids]:
            raise ValueError("token 7 does not decode")
        return super().decode(ids, **kwargs)


@pytest.mark.parametrize(
    ("model", "tokenizer", "error"),
    [
        (_SlowModel(fail=RuntimeError("CUDA out of memory")), _WordTokenizer(), "CUDA out of memory"),
        # The streamer's own decode fails: its end() would fail again, so the stop signal must not depend on it.
        (_SlowModel(), _BadTokenTokenizer(), "token 7 does not decode"),
    ],
)
def test_a_failing_generate_raises_in_the_caller_instead_of_hanging(model, tokenizer, error):
    import io
    import threading

    session = _session(model)
    session.tokenizer = tokenizer
    raised = []

    def ask():
        try:
            session.reply("What is a latch?", out=io.StringIO())
        except (RuntimeError, ValueError) as err:
            raised.append(err)

    caller = threading.Thread(target=ask, daemon=True)
    caller.start()
    caller.join(timeout=30)
    assert not caller.is_alive(), "reply() waited forever for a generate() that had failed"
    assert [str(e) for e in raised] == [error]


def test_a_second_ctrl_c_gets_out_of_a_generate_that_does_not_stop():
    import io
    import os
    import signal
    import threading
    import time

    released = threading.Event()

    class Stuck:
        device = "cpu"

        def generate(self, input_ids, streamer, **kwargs):  # as a long prefill: no token, no stop check
            os.kill(os.getpid(), signal.SIGINT)
            handled(signal.default_int_handler)  # two presses, not one handler call for both
            os.kill(os.getpid(), signal.SIGINT)
            released.wait(30)

    session = _session(Stuck())
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            session.reply("What is a latch?", out=io.StringIO())
    finally:
        released.set()
    assert time.monotonic() - started < 10 and session.messages == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class _Tokens:
    """One token a character: sizes that are easy to reason about."""

    def __call__(self, text, add_special_tokens=False):
        return type("E", (), {"input_ids": list(range(len(text)))})()


def _sized_session(context: int, max_new_tokens: int):
    from omegaconf import OmegaConf

    from chipadapt.chat import ChatSession

    session = ChatSession.__new__(ChatSession)
    session.tokenizer, session.retriever, session.context, session.window = _Tokens(), None, context, 0
    session.template = type("T", (), {"prompt": staticmethod(lambda m, a: "".join(t["content"] for t in m))})()
    session.cfg = OmegaConf.create(
        {"generate": {"max_new_tokens": max_new_tokens}, "retrieval": {"top_k": 2, "budget_tokens": 1024}}
    )
    session.attributes, session.order, session.messages, session.reply_attributes = {}, [], [], []
    return session


def test_the_prompt_leaves_out_the_earliest_turns_that_no_longer_fit_the_models_context():
    """Before, the whole history went into every prompt: past the model's context (the tiny model's 512
    positions, a 2k-context model after a few RAG turns), a model reads positions it never saw."""
    import io

    from chipadapt.errors import ChipadaptError

    session = _sized_session(context=100, max_new_tokens=20)
    for n in range(4):  # four turns of 20 characters each
        session.messages += [{"role": "user", "content": f"q{n}".ljust(10)}, {"role": "assistant", "content": "a" * 10}]
    said = io.StringIO()
    with pytest.raises(ChipadaptError, match="this question takes 90 prompt tokens, which leaves fewer than 20 of"):
        session.fitted_history({"role": "user", "content": "y" * 90}, said)
    assert session.window == 0 and not said.getvalue()  # a refused question leaves nothing out of later prompts
    history = session.fitted_history({"role": "user", "content": "x" * 30}, said)
    # 80 + 30 characters would not leave 20 for the reply: the first two turns are left out
    assert history[0]["content"].startswith("q2") and len(history) == 5 and session.next_window == 4
    assert "the 2 earliest turn(s) no longer fit the model's context of 100 tokens" in said.getvalue()
    assert session.window == 0  # only once the turn is kept (a reply stopped by Ctrl-C is not)
    assert len(session.messages) == 8  # /save still has the whole conversation
    assert session.reply_tokens(70) == 20
    # A reply asked longer than the context allows stops at the context's end; half of it stays for it.
    greedy = _sized_session(context=100, max_new_tokens=2000)
    assert greedy.reply_room() == 50 and greedy.reply_tokens(30) == 70
    session.reset()
    assert session.window == 0 and session.messages == []


def test_retrieved_passages_get_only_the_room_the_context_leaves():
    from chipadapt.retrieval.rag import RAG_TEMPLATE

    question = "how is skew balanced?"
    frame = len(RAG_TEMPLATE.format(context="", question=question))
    roomy = _sized_session(context=8192, max_new_tokens=256)
    assert roomy.passage_budget(question) == 1024  # retrieval.budget_tokens as set
    tight = _sized_session(context=512, max_new_tokens=256)
    assert tight.passage_budget(question) == 512 - 256 - frame - 16
    tight.last_retrieved, tight.last_sources = ["a#1", "b#2"], ["a#1"]
    assert (
        tight.sources_record()
        == f"sources: a#1; retrieved but over the {512 - 256 - frame - 16} tokens the model's context leaves: b#2"
    )


def test_the_note_counts_every_turn_left_out_and_a_question_past_the_context_is_told_so():
    """Before, a second note counted only the turns newly left out ("the 1 earliest" after 2 were), and a
    question longer than the whole context was told to lower generate.max_new_tokens, which cannot help."""
    import io

    from chipadapt.errors import ChipadaptError

    session = _sized_session(context=100, max_new_tokens=20)
    for n in range(4):
        session.messages += [{"role": "user", "content": f"q{n}".ljust(10)}, {"role": "assistant", "content": "a" * 10}]
    session.window = 2  # one turn already left out
    said = io.StringIO()
    session.fitted_history({"role": "user", "content": "x" * 30}, said)
    assert "(the 2 earliest turn(s) no longer fit" in said.getvalue()
    with pytest.raises(
        ChipadaptError, match=r"^this question is 120 prompt tokens for the model's context of 100 tokens"
    ):
        session.fitted_history({"role": "user", "content": "y" * 120}, said)
