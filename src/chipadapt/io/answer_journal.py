"""Answers a model has already given inside an unfinished evaluation task, so that a rerun after a kill
asks it only the rest.

An evaluation task on a large model can run for hours (IFEval's 541 prompts at 1,280 new tokens, a
full MMLU); a preemption in the middle of one used to cost the whole task. While a journal is open
(`recording(journal)`, around one task), text generation (models/text_generation.py) and
log-likelihood scoring (eval/loglikelihood.py) look each request up in it before computing it and
append each answer as soon as it is complete, one JSON line each, flushed: a killed process keeps
every answer it had written, and a line cut short by a crashed machine is skipped at the next open.

The journal's first line holds the key of what it answers for (the task's settings, model and code:
eval/finished_tasks.py); a journal written under another key is started afresh. It answers only for
the model it was opened for (`journal_for`): a task that also runs a judge model (bug_summary) journals the
judge's verdicts itself, in the same journal under requests that name the judge, so they are kept and
dropped with the model's answers. The key leaves the judge out: another judge rates the kept answers again.
Once the task is recorded its journal is deleted; a rerun under the same key is then given the finished
run's per-item records (`recorded`, eval/finished_tasks.py, while the per-item file is the one its record
wrote), which a task reads its answers back from and journals as it takes them (bug_summary).
A request asked again in the same run (VerilogEval's n samples of one prompt) is another request:
the k-th asking gets the k-th answer, so sampled answers stay n different samples.
"""

import json
import logging
from collections import Counter
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
        # {id: item} of a finished run's per-item records answered under this key (eval/finished_tasks.py):
        # a task whose items hold its model's answers (bug_summary) takes them instead of asking again.
        self.recorded: dict[str, dict] = {}
        self.recorded_results: dict = {}  # the results that finished run recorded with them
        # Set by a task that took its answers from `recorded` (or from this journal, where an earlier try had
        # taken them and journaled them with `recorded_results`): it wrote no prompt, so what its prompts were
        # given (eval/steering.py's label) is read from `recorded_results`.
        self.took_recorded = False
        self.asked: Counter[str] = Counter()  # how often each request was asked so far in this run
        self._torn = False
        if reuse:
            self._read()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.answers:  # new, or written under another key: our own file, started again
            with open(self.path, "w", encoding="utf-8") as handle:
                handle.write(json.dumps({"key": key}) + "\n")
        self._handle = open(self.path, "a", encoding="utf-8")
        if self.answers and self._torn:  # end the line a crash left half-written
            self._handle.write("\n")

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as err:
            log.warning("%s: unreadable (%s); answering every request again", self.path, err)
            return
        lines, self._torn = text.splitlines(), not text.endswith("\n")
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if not isinstance(header, dict) or header.get("key") != self.key:
            if lines:
                log.info("%s: written for other settings, data, model or code; starting it again", self.path)
            return
        for line in lines[1:]:
            try:
                record = json.loads(line)
                self.answers[record["id"]] = record["answer"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line a crash cut short
        if self.answers:
            log.info("%s: %d answers from an interrupted run kept", self.path, len(self.answers))

    def covers(self, model: Any) -> bool:
        return model is self.model

    def ask(self, request: Any) -> tuple[str, bool, Any]:
        """(slot, found, answer) for a request: any JSON-able description of everything the answer
        depends on beyond the journal's key. Each call is a new asking: its slot is the request's
        count so far, so call it once per answer wanted, in the task's own order."""
        base = sha256_json([self.key, request])
        slot = f"{base}:{self.asked[base]}"
        self.asked[base] += 1
        return (slot, True, self.answers[slot]) if slot in self.answers else (slot, False, None)

    def record(self, slot: str, answer: Any) -> None:
        self.answers[slot] = answer
        if self._handle is None:
            return
        try:
            self._handle.write(json.dumps({"id": slot, "answer": answer}) + "\n")
            self._handle.flush()  # in the page cache: a killed process keeps it
        except OSError as err:  # the journal only saves time: the task goes on without it
            log.warning("%s: %s; answers are no longer kept for a rerun", self.path, err)
            self._handle = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


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
