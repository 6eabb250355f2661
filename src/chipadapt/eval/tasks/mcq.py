"""`mcq`: multiple choice by log-likelihood of each choice, zero- or few-shot (MMLU and domain sets).

`acc` picks the choice with the highest log-likelihood, `acc_norm` divides it by the choice's
length in bytes (lm-eval's acc_norm). Records: {"question", "choices", "answer": index, "subject"?}.
`max_per_subject` takes the first N questions of every subject (in file order) before `limit`, so a
small subset of MMLU spans all 57 subjects instead of the first few in the file.
`baseline_chance` and `baseline_longest` are what guessing and picking the longest choice would score
on the same questions (eval/mcq_baselines.py): read `acc` and `acc_norm` against them.
"""

from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import content_id, summarize
from chipadapt.eval.mcq_baselines import chance_baseline, longest_choice_baseline
from chipadapt.eval.presets import adds_special_tokens, check_preset, mmlu_context
from chipadapt.eval.scoring import continuation_logprobs
from chipadapt.eval.task_base import TaskBase
from chipadapt.io.jsonl import jsonl_records

LETTERS = "ABCDEFGHIJ"


def read_mcq(path: Path, key: str, letters: bool = False) -> list[dict]:
    """JSONL, or a Hugging Face dataset (`hf:cais/mmlu:test`, parquet/arrow, save_to_disk folder).
    `letters`: the choices are named A-J in the prompt (style=letters), so at most 10 can be asked."""
    rows = []
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
        rows.append(row)
    if not rows:  # a score over no questions is no score: results.json would carry counts and no acc
        raise ChipadaptError(f"{key}: {path} holds no questions")
    return rows


def mcq_problem(row) -> str | None:
    """What is wrong with a multiple-choice record, in words; None when nothing is."""
    if not isinstance(row, dict):
        return "not a JSON object"
    missing = [k for k in ("question", "choices", "answer") if k not in row]
    if missing:
        return f"no {', '.join(missing)}"
    if not isinstance(row["question"], str):
        return "question is not text"
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
    ):
        self.preset = check_preset(preset, "eval.mcq.preset")
        if style not in ("letters", "cloze"):
            raise ChipadaptError(f"eval.mcq.style: {style!r} is not letters or cloze")
        letters = style == "letters"
        rows = read_mcq(Path(path), "eval.mcq.path", letters)
        if max_per_subject:
            rows = first_per_subject(rows, max_per_subject)
        self.rows = rows[:limit]
        if not self.rows:
            raise ChipadaptError(
                f"eval.mcq: no questions left of {path} (limit={limit}, max_per_subject={max_per_subject})"
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
        self.style, self.batch_size, self.max_length = style, batch_size, max_length

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
        scores = continuation_logprobs(
            model,
            tokenizer,
            pairs,
            self.batch_size,
            self.max_length,
            add_special_tokens=adds_special_tokens(self.preset),
            progress="mcq",
        )
        self.items = []
        position = 0
        for row in self.rows:
            k = len(row["choices"])
            ll = scores[position : position + k]
            norm = [s / self.norm_length(row, i) for i, s in enumerate(ll)]
            pick, pick_norm = max(range(k), key=ll.__getitem__), max(range(k), key=norm.__getitem__)
            self.items.append(
                {
                    "id": str(row.get("id") or content_id(row["question"], row["choices"])),
                    "prediction": pick,
                    "prediction_norm": pick_norm,
                    "reference": int(row["answer"]),
                    "scores": {"acc": pick == int(row["answer"]), "acc_norm": pick_norm == int(row["answer"])},
                    "subject": row.get("subject"),
                    "loglikelihoods": ll,
                }
            )
            position += k
        return {
            **summarize(self.items),
            "preset": self.preset,
            "questions": len(self.rows),
            "subjects": len({r.get("subject") for r in self.rows}),
            "baseline_chance": chance_baseline(self.rows),
            "baseline_longest": longest_choice_baseline(self.rows),
        }
