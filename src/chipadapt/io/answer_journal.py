"""Answers a model has already given inside an unfinished evaluation task, so that a rerun after a kill
asks it only the rest.

An evaluation task on a large model can run for hours (IFEval's 541 prompts at 1,280 new tokens, a
full MMLU); a preemption in the middle of one used to cost the whole task. While a journal is open
(`recording(journal)`, around one task), text generation (models/text_generation.py) and
log-likelihood scoring (eval/loglikelihood.py) look each request up in it before computing it and
append each answer as soon as it is complete. The file is append-only, one JSON line per answer, each
line flushed: a killed process loses at most the line it was writing, which the next open skips.

The journal's first line holds the key of what it answers for (the task's settings, model and code:
eval/finished_tasks.py); a journal written under another key is started afresh. It answers only for
the model it was opened for: a task that also runs a judge model computes the judge's answers anew.
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from chipadapt.io.hashing import sha256_json

log = logging.getLogger(__name__)


class AnswerJournal:
    def __init__(self, path: Path, key: str, model: Any, reuse: bool = True):
        """`reuse=False` starts the file afresh whatever it holds."""
        self.path, self.key, self.model = Path(path), key, model
        self.answers: dict[str, Any] = {}
        self._torn = False
        if reuse:
            self._read()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.answers:  # new, or written under another key: our own file, started again
            with open(self.path, "w", encoding="utf-8") as handle:
                handle.write(json.dumps({"key": key}) + "\n")
        self._handle = open(self.path, "a", encoding="utf-8")
        if self.answers and self._torn:  # end the line a killed process left half-written
            self._handle.write("\n")

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
            lines, self._torn = text.splitlines(), not text.endswith("\n")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as err:
            log.warning("%s: unreadable (%s); answering every request again", self.path, err)
            return
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if header.get("key") != self.key:
            if lines:
                log.info("%s: written for other settings, data, model or code; starting it again", self.path)
            return
        for line in lines[1:]:
            try:
                record = json.loads(line)
                self.answers[record["id"]] = record["answer"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # the line a killed process was writing
        if self.answers:
            log.info("%s: %d answers from an interrupted run kept", self.path, len(self.answers))

    def covers(self, model: Any) -> bool:
        return model is self.model

    def lookup(self, request: Any) -> tuple[bool, Any]:
        """(found, answer) for a request (any JSON-able description of everything the answer depends on
        beyond the journal's key)."""
        rid = sha256_json(request)
        return (True, self.answers[rid]) if rid in self.answers else (False, None)

    def record(self, request: Any, answer: Any) -> None:
        rid = sha256_json(request)
        self.answers[rid] = answer
        self._handle.write(json.dumps({"id": rid, "answer": answer}) + "\n")
        self._handle.flush()  # in the page cache: a killed process keeps it

    def close(self) -> None:
        self._handle.close()

    def remove(self) -> None:
        """After the task's results are recorded: the answers live on in its per-item file."""
        self.close()
        self.path.unlink(missing_ok=True)


_active: ContextVar[AnswerJournal | None] = ContextVar("chipadapt_answer_journal", default=None)


def journal_for(model: Any) -> AnswerJournal | None:
    """The open journal when it answers for `model`, else None."""
    journal = _active.get()
    return journal if journal is not None and journal.covers(model) else None


@contextmanager
def recording(journal: AnswerJournal) -> Iterator[AnswerJournal]:
    token = _active.set(journal)
    try:
        yield journal
    finally:
        _active.reset(token)
        journal.close()
