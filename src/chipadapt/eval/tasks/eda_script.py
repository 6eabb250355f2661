"""`eda_script`: natural language -> OpenROAD Python script (EDA-Corpus), scored without running it.

Metrics: `syntax` (fraction that parse as a script: `ast.parse` accepts it and it has a statement;
an empty reply does not), `call_f1` / `call_recall` (which API calls the reference makes, as
multisets of names), `arg_f1` (calls with the same constant arguments), `all_calls` (fraction of
scripts that make every call of the reference: an automatic stand-in for ChipNeMo's graded
accuracy), `all_calls.<category>` (the same per record `category`), `rougeL` on the code. Rows
come from the fixed evaluation split (`chipadapt.data.eda_split`) that SFT leaves out. Items are
scripts, named by a hash of their prompt and reference.
"""

from pathlib import Path

from chipadapt.data.eda_split import is_eval_row
from chipadapt.errors import ChipadaptError
from chipadapt.eval.eda.calls import api_calls, extract_code, f1, parses
from chipadapt.eval.items import content_id, summarize
from chipadapt.eval.rouge import RougeL
from chipadapt.eval.scoring import generate
from chipadapt.eval.task_base import TaskBase
from chipadapt.io.jsonl import jsonl_records

INSTRUCTION = (
    "Write an OpenROAD Python script (using the `openroad`/`odb` Python API) for the following task. "
    "Reply with the code in a ```python block.\n\nTask: {prompt}"
)


def read_rows(path: str | Path) -> list[dict]:
    """Every record, checked: a non-empty `prompt`, `script` and `category` (the category names the
    per-category figure `all_calls.<category>`; a record without one would be counted under an empty
    name, so it is refused rather than given a made-up one)."""
    path = Path(path)
    rows = []
    for lineno, record in jsonl_records(path, missing=f"eval.eda_script.path: {path} does not exist"):
        for field in ("prompt", "script", "category"):
            value = record.get(field)
            if not isinstance(value, str) or not value.strip():
                raise ChipadaptError(
                    f"{path}:{lineno}: needs non-empty string fields 'prompt', 'script' and 'category' "
                    f"({field!r} is {'missing' if value is None else repr(value)})"
                )
        rows.append(record)
    if not rows:
        raise ChipadaptError(f"eval.eda_script.path: {path} holds no scripts")
    return rows


def script_scores(prediction: str, reference: str) -> dict:
    """One script's scores. Call metrics only where the reference parses (some EDA-Corpus flow
    scripts have syntax errors of their own); syntax for every script."""
    scores = {"syntax": parses(prediction)}
    if parses(reference):
        p_names, p_args = api_calls(prediction)
        r_names, r_args = api_calls(reference)
        _, recall, name_f1 = f1(p_names, r_names)
        scores.update(
            {
                "call_f1": name_f1,
                "call_recall": recall,
                "arg_f1": f1(p_args, r_args)[2],
                "all_calls": parses(prediction) and not (r_names - p_names),
            }
        )
    return scores


def score_scripts(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Each metric's mean over the scripts that carry it, with its interval."""
    items = [{"scores": script_scores(pred, ref)} for pred, ref in zip(predictions, references)]
    return {**summarize(items), "unparseable_references": sum("call_f1" not in i["scores"] for i in items)}


class EDAScriptTask(TaskBase):
    def __init__(
        self,
        path: str,
        eval_fraction: float,
        categories: list[str] | None,
        limit: int | None,
        max_new_tokens: int,
        batch_size: int,
        rouge: RougeL,
    ):
        self.path, self.eval_fraction, self.categories, self.limit = path, eval_fraction, categories, limit
        self.max_new_tokens, self.batch_size, self.rouge = max_new_tokens, batch_size, rouge
        # Read now: evaluate.py builds every task before loading the model, so a bad record or a
        # misspelt category stops the run before any task generates.
        self.selected = self._select(read_rows(path))

    def _select(self, all_rows: list[dict]) -> list[dict]:
        rows = [r for r in all_rows if is_eval_row(r["script"], self.eval_fraction)]
        if self.categories:
            present = sorted({r["category"] for r in all_rows})
            for category in self.categories:
                if category not in present:  # a typo would silently drop that category's scripts
                    raise ChipadaptError(
                        f"eval.eda_script.categories: {category!r} is no record's category "
                        f"(categories in {self.path}: {', '.join(present)})"
                    )
            rows = [r for r in rows if r["category"] in set(self.categories)]
        rows = rows[: self.limit]
        if not rows:
            raise ChipadaptError(
                f"eval.eda_script: no evaluation rows in {self.path} "
                f"(eval_fraction={self.eval_fraction}, categories={self.categories}, limit={self.limit})"
            )
        return rows

    def rows(self) -> list[dict]:
        return self.selected

    def run(self, model, tokenizer) -> dict[str, float]:
        rows = self.rows()
        replies = generate(
            model,
            tokenizer,
            [INSTRUCTION.format(prompt=r["prompt"]) for r in rows],
            self.batch_size,
            self.max_new_tokens,
            chat=True,
        )
        self.items = []
        for row, prediction in zip(rows, [extract_code(reply) for reply in replies]):
            scores = script_scores(prediction, row["script"])
            scores["rougeL"] = self.rouge.score(prediction, row["script"])
            if "all_calls" in scores:  # the per-category figure, on the scripts whose reference parses
                scores[f"all_calls.{row['category']}"] = scores["all_calls"]
            self.items.append(
                {
                    "id": content_id(row["prompt"], row["script"]),
                    "prediction": prediction,
                    "reference": row["script"],
                    "scores": scores,
                    "prompt": row["prompt"],
                    "category": row["category"],
                }
            )
        return {
            **summarize(self.items),
            "unparseable_references": sum("call_f1" not in i["scores"] for i in self.items),
            "scripts": len(rows),
            "rougeL_scorer": self.rouge.describe(),
        }
