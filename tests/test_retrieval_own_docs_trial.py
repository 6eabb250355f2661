"""Retrieval and RAG over a user's own markdown docs (a new-user trial): section paths of passages
that open with a heading, ICT sentences across wrapped lines, a warning when the LLM writes few
questions, empty queries, and chat's /sources and chat.log naming passage ids."""

import logging
import random

import pytest
from conftest import write_jsonl

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passages import Passage, build_passages, chunk_text

TIMER_DOC = """# Quartz Timer

Quartz Timer is the static timing engine of the suite. It reads Liberty libraries, parasitics
and constraints, then reports slack per clock group for setup and hold.

## Commands

### report_slack

Prints the worst negative slack and the total negative slack per clock group.

| option | meaning |
|---|---|
| `-paths` | number of worst paths to list |
| `-corner` | analysis corner name |

### set_derate

Applies on-chip variation derating factors to cell and net delays.

| option | meaning |
|---|---|
| `-early` | derate factor for early paths |
| `-late` | derate factor for late paths |

## Corners

Corners are declared in the configuration file. Each corner names a Liberty file and a temperature.
"""


def test_a_passage_that_opens_with_a_heading_is_labelled_with_that_heading_not_its_neighbour(tmp_path):
    corpus = write_jsonl(tmp_path / "docs.jsonl", [{"path": "timing.md", "text": TIMER_DOC}])
    passages = build_passages({"docs": {"path": str(corpus)}}, 420, 40, 0)
    assert [p.text for p in passages] == chunk_text(TIMER_DOC, 420, 40, 0)  # cut as before
    # The second passage opens with set_derate and holds Corners; report_slack ends the first one.
    assert len(passages) == 2 and passages[1].text.startswith("### set_derate") and "## Corners" in passages[1].text
    assert passages[1].context == "Quartz Timer > Commands > set_derate"
    assert passages[0].context == "Quartz Timer"  # opens with the title, then prose: the title alone


def test_a_passage_opening_with_several_headings_is_labelled_with_the_innermost():
    from chipadapt.retrieval.passages import chunk_sections

    doc = "# T\n\n" + "Intro words. " * 30 + "\n\n## Commands\n\n### place_pins\n\nPlaces pins on the die edges."
    sections = chunk_sections(doc, 200, 20, 0)
    assert sections[-1][0].startswith("## Commands")
    assert sections[-1][1] == ((1, "T"), (2, "Commands"), (3, "place_pins"))


WRAPPED = Passage(
    "router.md#2",
    "## Messages\n\n"
    "`[WARNING RT-0107] Gcell overflow on layer M3.` means global routing could not fit all nets into the\n"
    "gcell capacity of that layer. Reduce the placement density or widen the layer range so that\n"
    "the router has room.\n"
    "- a list item is a block of its own and is never a query\n"
    "| `-layers` | routing layer range such as M2 to M7 for the router |",
    "router.md",
)


WARNING_SENTENCE = (
    "`[WARNING RT-0107] Gcell overflow on layer M3.` means global routing could not fit all nets into the "
    "gcell capacity of that layer."
)
REDUCE_SENTENCE = "Reduce the placement density or widen the layer range so that the router has room."


def test_ict_queries_are_whole_sentences_of_a_hard_wrapped_paragraph():
    from chipadapt.retrieval.synthetic_queries import ict_query

    queries = {ict_query(WRAPPED, random.Random(seed))[0] for seed in range(20)}
    # never "... could not fit all nets into the", nor the list item or the table row
    assert queries == {WARNING_SENTENCE, REDUCE_SENTENCE}
    for seed in range(4):
        query, rest = ict_query(WRAPPED, random.Random(seed))
        assert query not in " ".join(rest.split()) and "## Messages" in rest  # the positive lost the sentence only
    with_context = Passage(WRAPPED.id, WRAPPED.text, WRAPPED.source, "Router > Messages").with_context()
    assert {ict_query(with_context, random.Random(s))[0] for s in range(20)} == queries  # not the context line


def test_sentences_break_at_blocks_but_not_at_wrapped_lines():
    from chipadapt.retrieval.sentences import sentences

    found = sentences(WRAPPED.text)
    assert [s.text for s in found][:3] == ["## Messages", WARNING_SENTENCE, REDUCE_SENTENCE]
    assert [s.text[:2] for s in found[3:]] == ["- ", "| "]  # a list item and a table row: lines of their own
    for s in found:  # each span is the sentence as the passage writes it
        assert WRAPPED.text[s.start : s.end].split() == s.text.split()
    # A passage cut inside a long code block: its first lines are code, one line each, never joined.
    cut_in_code = "set_wire_rc -layer metal3. -corner slow\nestimate_parasitics -placement\n```\n\nThen it\nreports."
    assert [s.text for s in sentences(cut_in_code)] == [
        "set_wire_rc -layer metal3. -corner slow",
        "estimate_parasitics -placement",
        "```",
        "Then it reports.",
    ]


class _NoQuestions:
    """An LLM that never writes a usable question (as model=tiny does)."""

    def write_questions(self, passages, prompt=None, starts_with=""):
        return [None] * len(passages)

    def yes_scores(self, pairs):
        raise AssertionError("no LLM question to judge")


def test_llm_synthesis_warns_once_when_the_ict_fallback_carries_the_data(caplog):
    from chipadapt.retrieval.retrievers import BM25Retriever
    from chipadapt.retrieval.synthetic import synthesize

    passages = [
        Passage(f"d{i}", f"The router handles layer {i} congestion with care. Timing repair runs on path {i}.", "d")
        for i in range(6)
    ]
    miner = BM25Retriever(1.5, 0.75, "english", "en", False)
    miner.index(passages)
    settings = dict(
        mine_depth=3,
        judge_depth=1,
        judge_margin=0.0,
        num_negatives=2,
        near_duplicate_jaccard=0.5,
        min_passage_chars=10,
        seed=1,
    )
    with caplog.at_level(logging.WARNING, logger="chipadapt.retrieval.synthetic"):
        _, report = synthesize(passages, 4, "llm", miner, _NoQuestions(), **settings)
    assert report["llm"] == 0 and report["ict"] == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "usable question for only 0 of 4 passages; 4 fell back to ICT" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="chipadapt.retrieval.synthetic"):
        synthesize(passages, 4, "ict", miner, None, **settings)  # ICT asked for: nothing to warn about
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("text", ["", "   \t"])
def test_an_empty_query_is_an_error_naming_its_line(tmp_path, text):
    from chipadapt.retrieval.queries import read_queries

    path = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "query": "How is skew balanced?", "positive_ids": ["p"]},
            {"id": "b", "query": text, "positive_ids": ["p"]},
        ],
    )
    with pytest.raises(ChipadaptError, match=r"q\.jsonl:2: 'query' is empty$"):
        read_queries(path)


class _Words:
    """A tokenizer for rag_prompt's budget: one token per word."""

    def __call__(self, text, add_special_tokens=False):
        return type("Encoded", (), {"input_ids": text.split()})()


def _chat_session(passages, top_k, budget_tokens):
    from omegaconf import OmegaConf

    from chipadapt.chat import ChatSession
    from chipadapt.retrieval.retrievers import BM25Retriever

    session = ChatSession.__new__(ChatSession)
    session.retriever = BM25Retriever(1.5, 0.75, "english", "en", True)
    session.retriever.index(passages)
    session.passages = {p.id: p for p in passages}
    session.tokenizer = _Words()
    session.cfg = OmegaConf.create({"retrieval": {"top_k": top_k, "budget_tokens": budget_tokens}})
    session.messages, session.reply_attributes, session.last_sources, session.last_retrieved = [], [], [], []
    session.context, session.window = None, 0  # no model: no context to fit
    return session


PLACER = [
    Passage("docs:placer.md#0", "Zephyr Placer places standard cells.", "docs:placer.md", "Zephyr Placer"),
    Passage(
        "docs:placer.md#1",
        "### place_global\n\nRuns global placement of cells with a density target.",
        "docs:placer.md",
        "Zephyr Placer > Commands > place_global",
    ),
    Passage(
        "docs:placer.md#2",
        "### place_detail\n\nLegalizes cells onto rows after global placement of cells. " + "More words. " * 40,
        "docs:placer.md",
        "Zephyr Placer > Commands > place_detail",
    ),
]


def test_chat_sources_name_each_passage_and_section_and_the_log_records_the_ids(tmp_path, monkeypatch, capsys):
    from omegaconf import OmegaConf

    import chipadapt.chat as chat

    session = _chat_session(PLACER, top_k=3, budget_tokens=40)

    def reply(text, out=None):
        session.user_turn(text)
        print("an answer")
        return "an answer"

    session.reply = reply
    monkeypatch.setattr(chat, "read_lines", lambda prompt, history: iter(["placement of cells", "/sources"]))
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    transcript = logging.getLogger("chipadapt.chat.session")
    transcript.addHandler(handler)
    try:
        cfg = OmegaConf.create({"model": {"path": "m", "name": None}, "paths": {"cache_dir": str(tmp_path)}})
        chat.converse(session, cfg, tmp_path)
    finally:
        transcript.removeHandler(handler)
    shown = capsys.readouterr().out.split("assistant> ")[-1].strip().splitlines()[1:]
    assert session.last_retrieved[0] in session.last_sources
    assert shown == [f"[{n}] {pid}  ({session.passages[pid].context})" for n, pid in enumerate(session.last_sources, 1)]
    assert len(set(shown)) == len(shown) > 1  # one document's passages are told apart
    cut = [pid for pid in session.last_retrieved if pid not in session.last_sources]
    assert cut, "the budget should keep a retrieved passage out of the prompt"
    sources_line = next(r for r in records if r.startswith("sources: "))
    assert sources_line == (
        f"sources: {', '.join(session.last_sources)}; retrieved but over retrieval.budget_tokens: {', '.join(cut)}"
    )
    assert records.index(sources_line) < records.index("assistant: an answer")


def test_sources_without_retrieval_say_so(capsys, tmp_path):
    from chipadapt.chat import command

    session = _chat_session(PLACER, top_k=1, budget_tokens=100)
    session.last_sources = []
    command(session, "/sources", tmp_path)
    assert capsys.readouterr().out.strip() == "(no retrieval for the last answer)"
    session.user_turn("density target")
    command(session, "/sources", tmp_path)
    assert capsys.readouterr().out.strip() == "[1] docs:placer.md#1  (Zephyr Placer > Commands > place_global)"


def test_the_judge_runs_without_an_autograd_graph():
    # The LLM judge's forward passes over every candidate built a graph that nothing used.
    import torch

    from chipadapt.retrieval.retrievers import BM25Retriever
    from chipadapt.retrieval.synthetic import synthesize

    class _Judge:
        grad_seen: list[bool] = []

        def write_questions(self, items, prompt=None, starts_with=""):
            return ["How does the router handle congestion on this layer?" for _ in items]

        def yes_scores(self, pairs):
            self.grad_seen.append(torch.is_grad_enabled())
            return [1.0 for _ in pairs]

    passages = [
        Passage(f"d{i}", f"The router handles layer {i} congestion with care. Timing repair runs on path {i}.", "d")
        for i in range(6)
    ]
    miner = BM25Retriever(1.5, 0.75, "english", "en", False)
    miner.index(passages)
    judge = _Judge()
    synthesize(passages, 4, "llm", miner, judge, 3, 1, 0.0, 2, 0.5, 10, 1)
    assert judge.grad_seen and not any(judge.grad_seen)
