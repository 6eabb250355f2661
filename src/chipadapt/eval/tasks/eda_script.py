"""`eda_script`: natural language -> OpenROAD Python script (EDA-Corpus), scored without running it.

Metrics: `syntax` (fraction that parse as a script: `ast.parse` accepts it and it has a statement;
an empty reply does not), `call_f1` / `call_recall` (which API calls the reference makes, as
multisets of names), `arg_f1` (calls with the same constant arguments), `all_calls` (fraction of
scripts that make every call of the reference: an automatic stand-in for ChipNeMo's graded
accuracy), `all_calls.<category>` (the same per record `category`), `rougeL` on the code. Rows
come from the fixed evaluation split (`chipadapt.data.eda_split`) that SFT leaves out, `eval_fraction`
of the file (null: every script, for a set of one's own that SFT never saw); the log and results.json
(`scripts` of `scripts_in_file`) say how many were scored. Items are scripts, named by a hash of their
prompt and reference (`#2` for a repeat of the same pair).
"""

import logging
from pathlib import Path

from chipadapt.data.eda_split import is_eval_row
from chipadapt.errors import ChipadaptError
from chipadapt.eval.eda.calls import api_calls, extract_code, f1, parses
from chipadapt.eval.items import summarize
from chipadapt.eval.rouge import RougeL
from chipadapt.eval.scoring import generate
from chipadapt.eval.task_base import ItemIds, TaskBase
from chipadapt.io.jsonl import jsonl_records

log = logging.getLogger(__name__)

INSTRUCTION = (
    "Write an OpenROAD Python script (using the `openroad`/`odb` Python API) for the following task. "
    "Reply with the code in a ```python block.\n\nTask: {prompt}"
)


def read_rows(path: str | Path) -> list[dict]:
    """Every record, checked: a non-empty `prompt`, `script` and `category` (the category names the
    per-category figure `all_calls.<category>`; a record without one would be counted under an empty
    name, so it is refused rather than given a made-up one). Each gets its item `id`."""
    path = Path(path)
    rows = []
    ids = ItemIds(path)
    for lineno, record in jsonl_records(path, missing=f"eval.eda_script.path: {path} does not exist"):
        for field in ("prompt", "script", "category"):
            value = record.get(field)
            if not isinstance(value, str) or not value.strip():
                raise ChipadaptError(
                    f"{path}:{lineno}: needs non-empty string fields 'prompt', 'script' and 'category' "
                    f"({field!r} is {'missing' if value is None else repr(value)})"
                )
        # Named by content alone, as before records could carry ids: the same script keeps its id.
        rows.append({**record, "id": ids.of(None, lineno, record["prompt"], record["script"])})
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
        eval_fraction: float | None,
        categories: list[str] | None,
        limit: int | None,
        max_new_tokens: int,
        batch_size: int,
        rouge: RougeL,
    ):
        share = isinstance(eval_fraction, (int, float)) and not isinstance(eval_fraction, bool)
        if eval_fraction is not None and not (share and 0 < eval_fraction <= 1):
            raise ChipadaptError(
                f"eval.eda_script.eval_fraction: {eval_fraction!r} is not a share in (0, 1]; "
                "null scores every script of the file"
            )
        self.path, self.eval_fraction, self.categories, self.limit = path, eval_fraction, categories, limit
        self.max_new_tokens, self.batch_size, self.rouge = max_new_tokens, batch_size, rouge
        # Read now: evaluate.py builds every task before loading the model, so a bad record or a
        # misspelt category stops the run before any task generates.
        all_rows = read_rows(path)
        self.selected = self._select(all_rows)
        self.selection = {"scripts_in_file": len(all_rows), "eval_fraction": eval_fraction}
        log.info(
            "eda_script: %d of the %d scripts in %s are scored (%s%s%s)",
            len(self.selected),
            len(all_rows),
            path,
            "eval_fraction=null: every script"
            if eval_fraction is None
            else f"eval_fraction={eval_fraction}: the evaluation split SFT leaves out; null scores all",
            f", categories={list(categories)}" if categories else "",
            f", limit={limit}" if limit is not None else "",
        )

    def inputs(self) -> list[tuple[str, str]]:
        return [("path", str(self.path))]

    def _select(self, all_rows: list[dict]) -> list[dict]:
        rows = all_rows
        if self.eval_fraction is not None:
            rows = [r for r in rows if is_eval_row(r["script"], self.eval_fraction)]
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
                    "id": row["id"],
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
            **self.selection,
            "rougeL_scorer": self.rouge.describe(),
        }
