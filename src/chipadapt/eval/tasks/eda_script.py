"""`eda_script`: natural language -> OpenROAD Python script (EDA-Corpus), scored without running it.

Metrics: `syntax` (fraction that `ast.parse` accepts), `call_f1` / `call_recall` (which API calls
the reference makes, as multisets of names), `arg_f1` (calls with the same constant arguments),
`all_calls` (fraction of scripts that make every call of the reference: an automatic stand-in
for ChipNeMo's graded accuracy), `rougeL` on the code. Rows come from the fixed evaluation split
(`chipadapt.data.eda_split`) that SFT leaves out.
"""

import json
from pathlib import Path

from chipadapt.data.eda_split import is_eval_row
from chipadapt.errors import ChipadaptError
from chipadapt.io.jsonl import jsonl_records
from chipadapt.eval.eda.calls import api_calls, extract_code, f1, parses
from chipadapt.eval.scoring import generate
from chipadapt.eval.tasks.qa import rouge_l
from chipadapt.io.atomic import write_text_atomic

INSTRUCTION = ("Write an OpenROAD Python script (using the `openroad`/`odb` Python API) for the following task. "
               "Reply with the code in a ```python block.\n\nTask: {prompt}")


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    rows = []
    for lineno, record in jsonl_records(path, missing=f"eval.eda_script.path: {path} does not exist"):
        if not isinstance(record.get("prompt"), str) or not isinstance(record.get("script"), str):
            raise ChipadaptError(f"{path}:{lineno}: needs string fields 'prompt' and 'script'")
        rows.append(record)
    return rows


def score_scripts(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Call metrics count only rows whose reference parses (some EDA-Corpus flow scripts have syntax
    errors of their own); syntax and ROUGE-L count every row."""
    syntax, call_f1, call_recall, arg_f1, complete = [], [], [], [], []
    for pred, ref in zip(predictions, references):
        syntax.append(parses(pred))
        if not parses(ref):
            continue
        p_names, p_args = api_calls(pred)
        r_names, r_args = api_calls(ref)
        _, recall, name_f1 = f1(p_names, r_names)
        call_f1.append(name_f1)
        call_recall.append(recall)
        arg_f1.append(f1(p_args, r_args)[2])
        complete.append(parses(pred) and not (r_names - p_names))
    n, m = max(len(predictions), 1), max(len(call_f1), 1)
    return {"syntax": sum(syntax) / n, "call_f1": sum(call_f1) / m, "call_recall": sum(call_recall) / m,
            "arg_f1": sum(arg_f1) / m, "all_calls": sum(complete) / m, "rougeL": rouge_l(predictions, references) if predictions else 0.0,
            "unparseable_references": len(predictions) - len(call_f1)}


class EDAScriptTask:
    def __init__(self, path: str, eval_fraction: float, categories: list[str] | None, limit: int | None,
                 max_new_tokens: int, batch_size: int, output_dir: str):
        self.path, self.eval_fraction, self.categories, self.limit = path, eval_fraction, categories, limit
        self.max_new_tokens, self.batch_size, self.output_dir = max_new_tokens, batch_size, Path(output_dir)

    def rows(self) -> list[dict]:
        rows = [r for r in read_rows(self.path) if is_eval_row(r["script"], self.eval_fraction)]
        if self.categories:
            rows = [r for r in rows if r.get("category") in set(self.categories)]
        if not rows:
            raise ChipadaptError(f"eval.eda_script: no evaluation rows in {self.path} (eval_fraction={self.eval_fraction}, categories={self.categories})")
        return rows[: self.limit]

    def run(self, model, tokenizer) -> dict[str, float]:
        rows = self.rows()
        replies = generate(model, tokenizer, [INSTRUCTION.format(prompt=r["prompt"]) for r in rows], self.batch_size, self.max_new_tokens, chat=True)
        predictions = [extract_code(reply) for reply in replies]
        results = score_scripts(predictions, [r["script"] for r in rows])
        by_category = {}
        for category in sorted({r.get("category", "") for r in rows}):
            idx = [i for i, r in enumerate(rows) if r.get("category", "") == category]
            if any(parses(rows[i]["script"]) for i in idx):
                by_category[category] = score_scripts([predictions[i] for i in idx], [rows[i]["script"] for i in idx])["all_calls"]
        results.update({f"all_calls.{c}": v for c, v in by_category.items()})
        results["scripts"] = len(rows)
        write_text_atomic(self.output_dir / "eda_script_predictions.jsonl",
                          "".join(json.dumps({**r, "prediction": p}) + "\n" for r, p in zip(rows, predictions)))
        return results
