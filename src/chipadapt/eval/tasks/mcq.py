"""`mcq`: multiple choice by log-likelihood of each choice, zero- or few-shot (MMLU and domain sets).

`acc` picks the choice with the highest log-likelihood, `acc_norm` divides it by the choice's
length in bytes (lm-eval's acc_norm). Records: {"question", "choices", "answer": index, "subject"?}.
`max_per_subject` takes the first N questions of every subject (in file order) before `limit`, so a
small subset of MMLU spans all 57 subjects instead of the first few in the file. `subjects` (a list of
names, as lm-eval's `--tasks mmlu_<subject>`) keeps only those, before `max_per_subject` and `limit`.
results.json scores each subject and each category on its own (`by_subject`, `by_category`:
eval/mcq_subjects.py); each item record keeps the prompt its choices were scored after (`context`).
`baseline_chance` and `baseline_longest` are what guessing and picking the longest choice would score
on the same questions (eval/mcq_baselines.py): read `acc` and `acc_norm` against them.
"""

import logging
from collections import Counter
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import content_id, summarize
from chipadapt.eval.mcq_baselines import chance_baseline, longest_choice_baseline
from chipadapt.eval.mcq_subjects import scores_by_group, select_subjects, subject_names
from chipadapt.eval.presets import adds_special_tokens, check_preset, mmlu_context, subject_shots
from chipadapt.eval.scoring import continuation_logprobs
from chipadapt.eval.task_base import ItemIds, TaskBase, fit_to_context
from chipadapt.io.jsonl import jsonl_records

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJ"


def read_mcq(path: Path, key: str, letters: bool = False, items: bool = False) -> list[dict]:
    """JSONL, or a Hugging Face dataset (`hf:cais/mmlu:test`, parquet/arrow, save_to_disk folder).
    `letters`: the choices are named A-J in the prompt (style=letters), so at most 10 can be asked.
    `items`: the rows are the questions scored, each given its item `id` (task_base.ItemIds) over the
    whole file, before any selection, so that a question has the same id whatever limit picks it."""
    rows = []
    ids = ItemIds(path)
    for lineno, row in jsonl_records(path, missing=f"{key}: {path} does not exist"):
        problem = mcq_problem(row)
        if problem:
            raise ChipadaptError(
                f"{path}:{lineno}: not a multiple-choice record {{question, choices, answer}}: {problem}"
            )
        if letters and len(row["choices"]) > len(LETTERS):
            raise ChipadaptError(
                f"{path}:{lineno}: {len(row['choices'])} choices, more than style=letters can name "
                f"(letters A-{LETTERS[-1]}); use eval.mcq.style=cloze"
            )
        if items:
            row = {**row, "id": ids.of(row.get("id"), lineno, row["question"], row["choices"])}
        rows.append(row)
    if not rows:  # a score over no questions is no score: results.json would carry counts and no acc
        raise ChipadaptError(f"{key}: {path} holds no questions")
    if ids.repeats:
        log.info(
            "%s: %d questions repeat an earlier one word for word; each is scored as an item (id #2...)",
            path,
            ids.repeats,
        )
    return rows


def subject_name(subject) -> str:
    return f"subject {subject!r}" if subject is not None else "no subject"


def mcq_problem(row) -> str | None:
    """What is wrong with a multiple-choice record, in words; None when nothing is."""
    if not isinstance(row, dict):
        return "not a JSON object"
    missing = [k for k in ("question", "choices", "answer") if k not in row]
    if missing:
        return f"no {', '.join(missing)}"
    if not isinstance(row["question"], str):
        return "question is not text"
    if isinstance(row["choices"], str):  # a CSV column: it cannot hold a list
        return "choices is text, not a list (write the file as JSON Lines or parquet)"
    if not isinstance(row["choices"], list):
        return "choices is not a list"
    if len(row["choices"]) < 2:  # one choice is always the pick: the question would always count as right
        return f"{len(row['choices'])} choice; a question needs at least 2"
    answer = row["answer"]
    if isinstance(answer, bool) or not isinstance(answer, (int, str)) or not str(answer).lstrip("-").isdigit():
        return f"answer {answer!r} is not the index of a choice"
    if not 0 <= int(answer) < len(row["choices"]):
        return f"answer {int(answer)} is outside the {len(row['choices'])} choices (0-based)"
    return None


def first_per_subject(rows: list[dict], n: int) -> list[dict]:
    """The first n rows of each subject (rows without one form one group), in file order."""
    seen: dict = {}
    kept = []
    for row in rows:
        subject = row.get("subject")
        seen[subject] = seen.get(subject, 0) + 1
        if seen[subject] <= n:
            kept.append(row)
    return kept


class MCQTask(TaskBase):
    def __init__(
        self,
        path: str,
        fewshot_path: str | None,
        num_fewshot: int,
        limit: int | None,
        style: str,
        batch_size: int,
        max_length: int,
        max_per_subject: int | None,
        preset: str,
        subjects: list[str] | None,
    ):
        self.preset = check_preset(preset, "eval.mcq.preset")
        if style not in ("letters", "cloze"):
            raise ChipadaptError(f"eval.mcq.style: {style!r} is not letters or cloze")
        letters = style == "letters"
        self.path, self.fewshot_path = path, fewshot_path
        rows = read_mcq(Path(path), "eval.mcq.path", letters, items=True)
        self.subjects = subject_names(subjects, "eval.mcq.subjects")
        rows = select_subjects(rows, self.subjects, path, "eval.mcq.subjects")
        if max_per_subject:
            rows = first_per_subject(rows, max_per_subject)
        self.rows = rows[:limit]
        if not self.rows:
            raise ChipadaptError(
                f"eval.mcq: no questions left of {path} (subjects={self.subjects}, limit={limit}, "
                f"max_per_subject={max_per_subject})"
            )
        if num_fewshot and not fewshot_path:
            raise ChipadaptError(f"eval.mcq.num_fewshot: {num_fewshot} examples asked and no eval.mcq.fewshot_path")
        self.shots = read_mcq(Path(fewshot_path), "eval.mcq.fewshot_path", letters) if num_fewshot else []
        # chipadapt: the file's first shots whatever their subject; lm_eval: the question's own subject's.
        self.num_fewshot = num_fewshot
        if self.preset == "chipadapt":
            if len(self.shots) < num_fewshot:  # fewer shots than asked would be scored as the asked setting
                raise ChipadaptError(
                    f"eval.mcq.num_fewshot: {num_fewshot} examples asked, eval.mcq.fewshot_path ({fewshot_path}) "
                    f"holds {len(self.shots)}"
                )
            self.shots = self.shots[:num_fewshot]
        elif num_fewshot:
            self._check_subject_shots()
        self.style, self.batch_size, self.max_length = style, batch_size, max_length

    def _check_subject_shots(self) -> None:
        """lm_eval takes each question's shots from its own subject; like lm-eval's first_n sampler, refuse
        a run that would give some question fewer than asked (it would be scored as the asked setting)."""
        available = Counter(s.get("subject") for s in self.shots)
        subjects = list(dict.fromkeys(r.get("subject") for r in self.rows))
        short = [s for s in subjects if available[s] < self.num_fewshot]
        if not short:
            return
        fewest = min(available[s] for s in subjects)
        more = f" (and {len(short) - 1} more subjects short)" if len(short) > 1 else ""
        lower = f"ask for at most {fewest}, " if fewest else ""
        raise ChipadaptError(
            f"eval.mcq.num_fewshot: {self.num_fewshot} examples asked; preset=lm_eval takes them from the question's "
            f"own subject, and eval.mcq.fewshot_path ({self.fewshot_path}) holds {available[short[0]]} of "
            f"{subject_name(short[0])}{more}; {lower}add examples of that subject, or use preset=chipadapt "
            "(the file's first examples whatever their subject)"
        )

    def shots_for(self, row: dict) -> int:
        """How many solved examples precede the question."""
        if self.preset == "lm_eval":
            return len(subject_shots(row, self.shots, self.num_fewshot))
        return len(self.shots)

    def inputs(self) -> list[tuple[str, str]]:
        return [("path", self.path), *([("fewshot_path", self.fewshot_path)] if self.shots else [])]

    def render(self, row: dict, with_answer: bool) -> str:
        text = f"Question: {row['question'].strip()}\n"
        if self.style == "letters":
            text += "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(row["choices"]))
        text += "Answer:"
        if with_answer:
            text += " " + self.choice_text(row, int(row["answer"])) + "\n\n"
        return text

    def choice_text(self, row: dict, index: int) -> str:
        return LETTERS[index] if self.style == "letters" else str(row["choices"][index])

    def context(self, row: dict, prefix: str) -> str:
        if self.preset == "lm_eval":
            return mmlu_context(row, self.shots, self.num_fewshot, self.style)
        return prefix + self.render(row, with_answer=False)

    def norm_length(self, row: dict, index: int) -> int:
        # acc_norm divides by the choice's length: lm-eval counts characters of the choice, chipadapt
        # bytes with its space.
        if self.preset == "lm_eval":
            return max(1, len(self.choice_text(row, index)))
        return max(1, len((" " + self.choice_text(row, index)).encode()))

    def run(self, model, tokenizer) -> dict[str, float]:
        prefix = "".join(self.render(shot, with_answer=True) for shot in self.shots)
        pairs = []
        for row in self.rows:
            context = self.context(row, prefix)
            for i in range(len(row["choices"])):
                pairs.append((context, " " + self.choice_text(row, i)))
        max_length = fit_to_context(model, self.max_length, "mcq")
        scores = continuation_logprobs(
            model,
            tokenizer,
            pairs,
            self.batch_size,
            max_length,
            add_special_tokens=adds_special_tokens(self.preset),
            progress=self.label("mcq"),
        )
        self.items = []
        shots = [self.shots_for(row) for row in self.rows]
        position = 0
        for row, row_shots in zip(self.rows, shots):
            k = len(row["choices"])
            context = pairs[position][0]
            ll = scores[position : position + k]
            norm = [s / self.norm_length(row, i) for i, s in enumerate(ll)]
            pick, pick_norm = max(range(k), key=ll.__getitem__), max(range(k), key=norm.__getitem__)
            self.items.append(
                {
                    "id": row["id"],
                    "prediction": pick,
                    "prediction_norm": pick_norm,
                    "reference": int(row["answer"]),
                    "scores": {"acc": pick == int(row["answer"]), "acc_norm": pick_norm == int(row["answer"])},
                    "subject": row.get("subject"),
                    # What the question is, so compare.py pairs only the same question under one id.
                    "content": content_id(row["question"], row["choices"]),
                    "shots": row_shots,
                    # What each choice (" " + its letter or text) was scored after: lm-eval's `arguments`.
                    "context": context,
                    "loglikelihoods": ll,
                }
            )
            position += k
        return {
            **summarize(self.items),
            "preset": self.preset,
            "style": self.style,
            "num_fewshot": self.num_fewshot,
            "shots_min": min(shots),
            "shots_mean": sum(shots) / len(shots),
            "max_length": max_length,
            "questions": len(self.rows),
            "subjects": len({r.get("subject") for r in self.rows}),
            **({"selected_subjects": self.subjects} if self.subjects is not None else {}),
            "baseline_chance": chance_baseline(self.rows),
            "baseline_longest": longest_choice_baseline(self.rows),
            **scores_by_group(self.items, self.rows),
        }
