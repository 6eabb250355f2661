"""Per-item records of an evaluation task: what it writes beside results.json, and what its
metrics and their intervals are computed from.

evaluate.py writes a task's `items` (a list set by its `run`) to `<task>_items.jsonl`, one line per item:
  {"id": ..., "prediction": ..., "reference": ..., "scores": {metric: score}, ...task-specific fields}
`id` is the same in every run (the dataset's id, or a hash of the item's content), so two runs are
matched item by item (`eval/paired.py`). A score has the form of its metric:
  true / false                         a proportion (accuracy, pass@1, prompt-level IFEval)
  a number                             a mean over items (ROUGE-L, F1, reciprocal rank)
  {"num": a, "den": b}                 sum(a) / sum(b) over items (bits per byte, instruction-level IFEval)
  {"num": a, "den": b, "transform": "exp"}   exp of that ratio (perplexity)
A metric's n is the number of items that carry its score (ROUGE-L against the references a row
has counts only those rows). Metric names are the ones in results.json, relative to the task
(`technical.rougeL`, `bm25.hit@8` for a retriever's metric nested under its name).
"""

import hashlib
import json
import math
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.intervals import Estimate, proportion, ratio
from chipadapt.io import strict_json
from chipadapt.io.atomic import write_text_atomic
from chipadapt.io.jsonl import FirstLines, jsonl_records

# results.json: beside each metric `m`, these keys say how sure it is.
SUFFIXES = ("_stderr", "_ci", "_n", "_ci_method")


def is_uncertainty_key(name: str) -> bool:
    return name.endswith(SUFFIXES)


def content_id(*parts) -> str:
    """A stable id for an item its dataset does not name: a hash of what defines it."""
    return hashlib.sha1(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:12]


def estimate(values: list) -> Estimate:
    """The metric and its interval from the items' scores (their form says which kind, see above)."""
    if all(isinstance(v, bool) for v in values):
        return proportion(values)
    if all(isinstance(v, dict) for v in values):
        transforms = {v.get("transform") for v in values}
        if len(transforms) > 1:
            raise ValueError(f"scores mix transforms {transforms}")
        return ratio([v["num"] for v in values], [v["den"] for v in values], transforms.pop())
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return ratio(values)
    raise ValueError(f"scores of mixed forms: {sorted({type(v).__name__ for v in values})}")


def unbounded(est: Estimate) -> bool:
    """No interval given: neither end finite (report.unbounded reads a manifest the same way). One infinite
    end (a diverged model's perplexity, (6.7e293, inf)) keeps the finite one: written [6.7e293, null]."""
    return not any(math.isfinite(end) for end in est.ci)


def metric_fields(name: str, est: Estimate) -> dict:
    """`name` and its siblings, as results.json carries them."""
    return {
        name: est.value,
        f"{name}_stderr": est.stderr,
        # No interval where the method gives none (too few items: unbounded at both ends, its method says
        # why); one item of a bootstrap has nothing to resample (the exact binomial still has an interval).
        f"{name}_ci": None if unbounded(est) or (est.n < 2 and est.method.startswith("bootstrap")) else list(est.ci),
        f"{name}_n": est.n,
        f"{name}_ci_method": est.method,
    }


def score_values(items: list[dict], name: str) -> list:
    return [item["scores"][name] for item in items if item["scores"].get(name) is not None]


def summarize(items: list[dict], prefix: str = "") -> dict:
    """Every metric the items score (in the order first seen), with its interval and n.
    With `prefix`, only the metrics named `prefix...`, with the prefix taken off (a retriever's)."""
    names = list(dict.fromkeys(k for item in items for k in item["scores"] if k.startswith(prefix)))
    fields = {}
    for name in names:
        values = score_values(items, name)
        if values:
            fields.update(metric_fields(name[len(prefix) :], estimate(values)))
    return fields


# A training run's final validation as per-item records, one per held-out document (or conversation) and
# split (stages/validation_items.py): what compare.py pairs two training runs on. Its scores are named as
# the run's metrics are (`val/domain/bpb`). A dotted name no evaluate.py task can have (a task is a
# config key, eval.<task>), so its file never stands for, or is taken for, an evaluation's.
VALIDATION_TASK = "train.val"


def metric_of(task: str, name: str) -> str:
    """The run metric an item score `name` of `task` is: `<task>.<name>`, or the score's own name for a
    training run's validation (already `val/<split>/<metric>`)."""
    return name if task == VALIDATION_TASK else f"{task}.{name}"


def items_file(folder: Path, task: str) -> Path:
    return Path(folder) / f"{task}_items.jsonl"


def write_items(folder: Path, task: str, items: list[dict]) -> Path:
    return write_text_atomic(
        items_file(folder, task), "".join(strict_json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    )


def read_items(path: Path) -> dict[str, dict]:
    """{id: item} of a `<task>_items.jsonl`. An id named twice is an error: keeping either record would
    pair (and count) one item where the file has several (6 records with id "same" were compared as n=1)."""
    items, first = {}, FirstLines(path)
    for lineno, item in jsonl_records(path):
        if "id" not in item or not isinstance(item.get("scores"), dict):
            raise ChipadaptError(f"{path}:{lineno}: an item needs 'id' and a 'scores' object")
        try:
            key = first.check(item["id"], lineno)
        except ChipadaptError:  # the same fault, said as it arises here: an evaluation's output, not a data file
            key = str(item["id"])
            raise ChipadaptError(
                f"{path}:{lineno}: id {key!r} repeats line {first.lines[key]}: an items file written before "
                "repeated questions were numbered (the default mcq set repeats 3 word for word), or its data "
                "file names an id twice; evaluate again with this version (it numbers a repeated "
                "question <id>#2 and refuses an id a data file repeats)"
            ) from None
        items[key] = item
    return items
