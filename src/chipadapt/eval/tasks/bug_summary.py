"""`bug_summary`: bug thread -> technical summary, managerial summary and task assignment.

Threads longer than `max_input_tokens` are summarised hierarchically: cut at message boundaries
into pieces that fit, each piece condensed, the condensed notes joined (and condensed again while
they are still too long), then the three final prompts run on the result. ROUGE-L is scored
against the references a row has; `judge.model_path` adds an LLM-as-judge 1-7 Likert score per
output (the judge's expected rating from its next-token distribution over the digits 1-7).
Items are threads: the three outputs, their references and per-output scores.
The judge's ratings are journaled with the model's answers (io/answer_journal.py), each under the judge
folder's identity, its other settings and how it ran: a rerun after a kill rates only the outputs not yet
rated (and loads no judge when none is left), and another judge, or this one rewritten, rates every output
again. The journal's key leaves the judge out (eval/finished_tasks.py JOURNALED_APART): the evaluated model's
journaled answers are kept for another judge, not generated again. A recorded task's journal is deleted; its
per-item records hold the same answers, and a rerun under the same key of answers (another judge after a
finished run) takes them from there (AnswerJournal.recorded), where the file is still the one its record
wrote, journals them at once (a rerun after a failure before this run's record takes them from the journal)
and only rates them.
"""

import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import summarize
from chipadapt.eval.rouge import RougeL
from chipadapt.eval.scoring import generate
from chipadapt.eval.task_base import TaskBase
from chipadapt.io.answer_journal import journal_for
from chipadapt.io.identity import by_identity, identity
from chipadapt.io.jsonl import FirstLines, jsonl_records

log = logging.getLogger(__name__)

OUTPUTS = {
    "technical": (
        "Write a technical summary of this bug thread for engineers: the root cause, the fix and how it was verified."
    ),
    "managerial": (
        "Write a two-sentence summary of this bug thread for a manager: the impact and the status, "
        "without technical detail."
    ),
    "assignment": "List who (which team) must do what next according to this bug thread, one line per team.",
}
# The journal's request for the outputs taken from a finished run's per-item records (`_recorded`).
RECORDED = "bug_summary_recorded_outputs"
CONDENSE = "Condense this part of a bug thread into short notes that keep every technical fact, name and number."
JUDGE = (
    "Rate the following {kind} of a bug thread on a scale from 1 (useless) to 7 (excellent) for accuracy and "
    "completeness.\n\nBug thread:\n{thread}\n\n{kind}:\n{summary}\n\nReply with a single digit from 1 to 7."
)


def read_threads(path: str | Path, thread_key: str) -> list[dict]:
    path = Path(path)
    rows = []
    ids = FirstLines(path)
    for lineno, record in jsonl_records(path, missing=f"eval.bug_summary.path: {path} does not exist"):
        if not isinstance(record.get(thread_key), str):
            raise ChipadaptError(f"{path}:{lineno}: no string field {thread_key!r}")
        rows.append({**record, "id": ids.check(record.get("id", lineno), lineno)})
    if not rows:
        raise ChipadaptError(f"{path}: no threads")
    return rows


def split_to_fit(text: str, tokenizer, max_tokens: int) -> list[str]:
    """Pieces of at most `max_tokens` tokens, cut between messages (blank lines), then lines, then tokens."""

    def size(t: str) -> int:
        return len(tokenizer(t, add_special_tokens=False).input_ids)

    pieces, current = [], ""
    units = [u for u in text.split("\n\n") if u.strip()]
    for unit in units:
        if size(unit) > max_tokens:  # one message longer than a piece: cut it by lines, then by tokens
            lines = unit.splitlines() if "\n" in unit else None
            sub = (
                split_to_fit("\n\n".join(lines), tokenizer, max_tokens)
                if lines and len(lines) > 1
                else [
                    tokenizer.decode(ids)
                    for ids in _windows(tokenizer(unit, add_special_tokens=False).input_ids, max_tokens)
                ]
            )
            if current:
                pieces.append(current)
                current = ""
            pieces += sub
            continue
        candidate = f"{current}\n\n{unit}" if current else unit
        if current and size(candidate) > max_tokens:
            pieces.append(current)
            current = unit
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def _windows(ids: list[int], n: int):
    return [ids[i : i + n] for i in range(0, len(ids), n)]


class BugSummaryTask(TaskBase):
    def __init__(
        self,
        path: str,
        thread_key: str,
        limit: int | None,
        max_input_tokens: int,
        max_new_tokens: int,
        batch_size: int,
        judge: dict | None,
        rouge: RougeL,
    ):
        self.path, self.thread_key, self.limit = path, thread_key, limit
        self.max_input_tokens, self.max_new_tokens, self.batch_size = max_input_tokens, max_new_tokens, batch_size
        self.judge, self.rouge = judge, rouge
        # Read now: evaluate.py builds every task before loading the model, so a bad record stops the
        # run before any task generates.
        self.rows = read_threads(path, thread_key)[:limit]
        if not self.rows:  # a score over no threads is no score
            raise ChipadaptError(f"eval.bug_summary: no threads left of {path} (limit={limit})")

    def inputs(self) -> list[tuple[str, str]]:
        judge = (self.judge or {}).get("model_path")
        return [("path", str(self.path)), *([("judge.model_path", str(judge))] if judge else [])]

    def _fit(self, model, tokenizer, thread: str) -> tuple[str, int]:
        """The thread, condensed until it fits; returns it and how many condensing rounds it took."""
        rounds = 0
        while len(tokenizer(thread, add_special_tokens=False).input_ids) > self.max_input_tokens:
            pieces = split_to_fit(thread, tokenizer, self.max_input_tokens)
            notes = generate(
                model,
                tokenizer,
                [f"{CONDENSE}\n\n{p}" for p in pieces],
                self.batch_size,
                self.max_new_tokens,
                chat=True,
            )
            condensed = "\n\n".join(n.strip() for n in notes)
            rounds += 1
            if len(condensed) >= len(thread) or rounds >= 4:  # a model that does not condense: cut instead
                ids = tokenizer(condensed, add_special_tokens=False).input_ids[: self.max_input_tokens]
                return tokenizer.decode(ids), rounds
            thread = condensed
        return thread, rounds

    @staticmethod
    @torch.no_grad()
    def _rate(judge_model, judge_tok, prompt: str) -> float:
        """The judge's expected 1-7 rating of one filled-in JUDGE prompt."""
        digits = [judge_tok(str(d), add_special_tokens=False).input_ids[-1] for d in range(1, 8)]
        if judge_tok.chat_template:
            prompt = judge_tok.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        ids = judge_tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids[:, -4096:]
        probs = judge_model(input_ids=ids.to(judge_model.device)).logits[0, -1, digits].float().softmax(-1)
        return float((probs * torch.arange(1, 8, device=probs.device)).sum())

    def _likert(self, model, rows: list[dict], outputs: dict[str, list[str]]) -> dict[str, list[float]]:
        """{kind: the judge's rating of each row's output}, each taken from the journal of the evaluated
        `model`'s answers where a run before a kill rated it, else rated now and journaled at once."""
        from chipadapt.models.hf_folder import check_hf_folder
        from chipadapt.models.inference import load_for_inference

        folder = check_hf_folder(self.judge["model_path"], "judge.model_path")
        # The judge runs like the evaluated model: its dtype, attention and device.
        dtype, attn = str(model.dtype).removeprefix("torch."), model.config._attn_implementation
        journal = journal_for(model)
        # What a rating depends on beyond its prompt: the judge's files, its other settings and how it runs (the
        # journal's key leaves every judge setting out).
        settings = OmegaConf.to_container(self.judge, resolve=True) if OmegaConf.is_config(self.judge) else self.judge
        others = by_identity({k: v for k, v in settings.items() if k != "model_path"})  # a file by its identity
        judge_key = {"judge": identity(folder), "settings": others, "dtype": dtype, "attn": attn}
        scores, judge = {}, None
        for kind, texts in outputs.items():
            scores[kind] = []
            for row, summary in zip(rows, texts):
                prompt = JUDGE.format(kind=kind, thread=row[self.thread_key][:6000], summary=summary)
                slot, found, rating = (
                    journal.ask(["judge_likert", judge_key, prompt]) if journal is not None else (None, False, None)
                )
                if not found:
                    if judge is None:  # loaded only for an output no earlier run rated
                        judge = load_for_inference(folder, dtype, attn, str(model.device), "judge.model_path")
                    rating = self._rate(judge.model, judge.tokenizer, prompt)
                    if journal is not None:
                        journal.record(slot, rating)
                scores[kind].append(rating)
        return scores

    def _recorded(self, model) -> tuple[dict[str, list[str]], list[int]] | None:
        """(outputs by kind, condensing rounds per row) of a finished run of the same model, settings and
        code (AnswerJournal.recorded: its per-item records), where they hold every row's; else None.
        Taken, they are journaled at once with that run's results (its steering label): a run that fails
        before its own record (a kill, a full disk) leaves them to its rerun, whatever became of the
        finished run's record and per-item file."""
        journal = journal_for(model)
        if journal is None:
            return None
        slot, found, kept = journal.ask([RECORDED, [str(row["id"]) for row in self.rows]])
        if found and _holds_recorded(kept, len(self.rows)):
            recorded, journal.recorded_results = kept["items"], kept["results"]
        else:
            recorded = [journal.recorded.get(str(row["id"])) for row in self.rows]
            if not all(_holds_answers(item) for item in recorded):
                return None
            recorded = [
                {"prediction": item["prediction"], "condensing_rounds": item["condensing_rounds"]} for item in recorded
            ]
            journal.record(slot, {"items": recorded, "results": journal.recorded_results})
        journal.took_recorded = True
        log.info(
            "%s: the model's outputs of the finished run of these settings kept; not generated again",
            self.label("bug_summary"),
        )
        outputs = {kind: [item["prediction"][kind] for item in recorded] for kind in OUTPUTS}
        return outputs, [item["condensing_rounds"] for item in recorded]

    def run(self, model, tokenizer) -> dict[str, float]:
        rows = self.rows
        recorded = self._recorded(model)
        if recorded is not None:
            outputs, fitted = recorded[0], [(None, rounds) for rounds in recorded[1]]
        else:
            fitted = [self._fit(model, tokenizer, r[self.thread_key]) for r in rows]
            outputs = {}
            for kind, instruction in OUTPUTS.items():
                prompts = [f"{instruction}\n\nBug thread:\n{text}" for text, _ in fitted]
                outputs[kind] = generate(model, tokenizer, prompts, self.batch_size, self.max_new_tokens, chat=True)
        items = []
        for i, row in enumerate(rows):
            references = {kind: row.get(kind) for kind in OUTPUTS if isinstance(row.get(kind), str)}
            items.append(
                {
                    "id": row["id"],
                    "prediction": {kind: outputs[kind][i] for kind in OUTPUTS},
                    "reference": references,
                    "scores": {
                        f"{kind}.rougeL": self.rouge.score(outputs[kind][i], ref) for kind, ref in references.items()
                    },
                    "condensing_rounds": fitted[i][1],
                }
            )
        if self.judge and self.judge.get("model_path"):
            for kind, ratings in self._likert(model, rows, outputs).items():
                for item, rating in zip(items, ratings):
                    item["scores"][f"{kind}.likert"] = rating
        self.items = items
        return {
            **summarize(items),
            "threads": len(rows),
            "hierarchical": sum(r > 0 for _, r in fitted),
            "rougeL_scorer": self.rouge.describe(),
        }


def _holds_answers(item) -> bool:
    """A per-item record this task wrote: every output's text and the thread's condensing rounds."""
    if not isinstance(item, dict) or not isinstance(item.get("prediction"), dict):
        return False
    rounds = item.get("condensing_rounds")
    return all(isinstance(item["prediction"].get(kind), str) for kind in OUTPUTS) and isinstance(rounds, int)


def _holds_recorded(kept, rows: int) -> bool:
    """A journaled taking of recorded outputs (`_recorded`): every row's outputs, and that run's results."""
    return (
        isinstance(kept, dict)
        and isinstance(kept.get("results"), dict)
        and isinstance(kept.get("items"), list)
        and len(kept["items"]) == rows
        and all(_holds_answers(item) for item in kept["items"])
    )
