"""A run's metrics by name, read from its manifest.json — the one naming shared by compare.py and
`optimized_metric` (what a sweep optimises):

- training: the final validation as logged, `val/<split>/<metric>` (`val/domain/bpb`), and the
  stage's other measurements by dotted path (`train_loss`, `val.minilm.hit@8` for the retriever);
- evaluation (evaluate.py, merge.py with eval=[...]): `<task>.<metric>` (`ifeval.prompt_loose`,
  `retrieval.bm25.hit@8`).
Counts (questions, tokens, seconds ...) are not metrics and are left out."""

from typing import Any

from chipadapt.eval.items import is_uncertainty_key

COUNTS = frozenset(
    {
        "seconds",
        "questions",
        "tasks",
        "threads",
        "prompts",
        "scripts",
        "queries",
        "passages",
        "documents",
        "tokens",
        "subjects",
        "global_step",
        "items",
    }
)
# Metrics where lower is better, by their last name component; every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset({"loss", "ppl", "bpb", "perplexity", "mae", "ms_per_query", "compile_errors", "timeouts"})


def lower_is_better(name: str) -> bool:
    return name.replace("/", ".").split(".")[-1].removeprefix("train_") in LOWER_IS_BETTER


def _numbers(tree: Any, prefix: str, sep: str) -> dict[str, float]:
    out = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(_numbers(value, f"{prefix}{sep if prefix else ''}{key}", sep))
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        last = prefix.replace("/", ".").split(".")[-1]
        if last not in COUNTS and not is_uncertainty_key(last):  # a metric's stderr, interval and n travel beside it
            out[prefix] = float(tree)
    return out


def evaluation_metrics(results: dict) -> dict[str, float]:
    """{task: {metric: value}} (results.json) -> {"task.metric": value}."""
    return _numbers(results, "", ".")


def run_metrics(manifest: dict) -> dict[str, float]:
    metrics = dict(evaluation_metrics(manifest.get("results") or {}))
    if manifest.get("kind", "train") == "train":
        measured = dict(manifest.get("metrics") or {})
        after, _ = measured.pop("after", None) or {}, measured.pop("before", None)
        for split, values in after.items():
            metrics.update(_numbers(values, f"val/{split}", "/"))
        metrics.update(_numbers(measured, "", "."))
    return metrics
