"""`mcq`: multiple choice by log-likelihood of each choice, zero- or few-shot (MMLU and domain sets).

`acc` picks the choice with the highest log-likelihood, `acc_norm` divides it by the choice's
length in bytes (lm-eval's acc_norm). Records: {"question", "choices", "answer": index, "subject"?}.
`max_per_subject` takes the first N questions of every subject (in file order) before `limit`, so a
small subset of MMLU spans all 57 subjects instead of the first few in the file.
"""

import json
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.scoring import continuation_logprobs

LETTERS = "ABCDEFGHIJ"


def read_mcq(path: Path, key: str) -> list[dict]:
    if not path.is_file():
        raise ChipadaptError(f"{key}: {path} does not exist")
    rows = []
    for lineno, line in enumerate(path.open(encoding="utf-8"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            assert isinstance(row["choices"], list) and 0 <= int(row["answer"]) < len(row["choices"])
        except (json.JSONDecodeError, KeyError, AssertionError, TypeError, ValueError):
            raise ChipadaptError(f"{path}:{lineno}: not a multiple-choice record {{question, choices, answer}}") from None
        rows.append(row)
    return rows


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


class MCQTask:
    def __init__(self, path: str, fewshot_path: str | None, num_fewshot: int, limit: int | None, style: str,
                 batch_size: int, max_length: int, max_per_subject: int | None):
        if style not in ("letters", "cloze"):
            raise ChipadaptError(f"eval.mcq.style: {style!r} is not letters or cloze")
        rows = read_mcq(Path(path), "eval.mcq.path")
        if max_per_subject:
            rows = first_per_subject(rows, max_per_subject)
        self.rows = rows[:limit]
        self.shots = read_mcq(Path(fewshot_path), "eval.mcq.fewshot_path")[:num_fewshot] if num_fewshot else []
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

    def run(self, model, tokenizer) -> dict[str, float]:
        prefix = "".join(self.render(shot, with_answer=True) for shot in self.shots)
        pairs = []
        for row in self.rows:
            context = prefix + self.render(row, with_answer=False)
            for i in range(len(row["choices"])):
                pairs.append((context, " " + self.choice_text(row, i)))
        scores = continuation_logprobs(model, tokenizer, pairs, self.batch_size, self.max_length)
        correct = correct_norm = 0
        position = 0
        for row in self.rows:
            k = len(row["choices"])
            ll = scores[position : position + k]
            norm = [s / max(1, len((" " + self.choice_text(row, i)).encode())) for i, s in enumerate(ll)]
            correct += int(max(range(k), key=ll.__getitem__) == int(row["answer"]))
            correct_norm += int(max(range(k), key=norm.__getitem__) == int(row["answer"]))
            position += k
        n = max(len(self.rows), 1)
        return {"acc": correct / n, "acc_norm": correct_norm / n, "questions": len(self.rows),
                "subjects": len({r.get("subject") for r in self.rows})}
