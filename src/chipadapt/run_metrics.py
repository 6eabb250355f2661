"""A run's metrics by name, read from its manifest.json — the one naming shared by compare.py and
`optimized_metric` (what a sweep optimises):

- training: the final validation as logged, `val/<split>/<metric>` (`val/domain/bpb`), and the
  stage's other measurements by dotted path (`train_loss`, `val.minilm.hit@8` for the retriever);
- evaluation (evaluate.py, merge.py with eval=[...]): `<task>.<metric>` (`ifeval.prompt_loose`,
  `retrieval.bm25.hit@8`).
Counts (questions, tokens, seconds ...), the settings a task reports (`ifeval.max_new_tokens`) and the
baselines it scores beside the model (`mcq.baseline_chance`) are not the run's metrics and are left out:
they took compare.py's plots and table from the figures that differ between models."""

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
        "hierarchical",
        "unparseable_references",
    }
)
# Settings a task writes into its results, so that a reader knows how the figures were made.
SETTINGS = frozenset(
    {"max_new_tokens", "num_fewshot", "shots_min", "shots_mean", "max_length", "scripts_in_file", "eval_fraction"}
)
# A score of a fixed rule on the same items (a uniform guess, the longest choice), not of the model.
BASELINE_PREFIX = "baseline_"


def is_metric_name(last: str) -> bool:
    """Whether a results value named `last` (its last name component) is a measurement of the model."""
    return not (last in COUNTS or last in SETTINGS or last.startswith(BASELINE_PREFIX) or is_uncertainty_key(last))


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
        if is_metric_name(last):  # a metric's stderr, interval and n travel beside it
            out[prefix] = float(tree)
    return out


def evaluation_metrics(results: dict) -> dict[str, float]:
    """{task: {metric: value}} (results.json) -> {"task.metric": value}."""
    return _numbers(results, "", ".")


def run_metrics(manifest: dict) -> dict[str, float]:
    metrics = dict(evaluation_metrics(manifest.get("results") or {}))
    if manifest.get("kind", "train") == "train":
        measured = dict(manifest.get("metrics") or {})
        # The paired change from before to after is a comparison of two validations, not the run's measure.
        after, _, _ = measured.pop("after", None) or {}, measured.pop("before", None), measured.pop("change", None)
        for split, values in after.items():
            metrics.update(_numbers(values, f"val/{split}", "/"))
        metrics.update(_numbers(measured, "", "."))
    return metrics


def _uncertainty(tree: Any, prefix: str) -> dict[str, dict]:
    out = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            name = f"{prefix}{'.' if prefix else ''}{key}"
            if isinstance(value, dict):
                out.update(_uncertainty(value, name))
            elif is_metric_name(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
                ci, n, method = tree.get(f"{key}_ci"), tree.get(f"{key}_n"), tree.get(f"{key}_ci_method")
                ci = ci if isinstance(ci, list) and len(ci) == 2 else None
                if ci is not None or isinstance(n, int):
                    out[name] = {"ci": ci, "n": n}
                    if ci is None and isinstance(method, str):
                        out[name]["why"] = method
    return out


def evaluation_uncertainty(results: dict) -> dict[str, dict]:
    """{"task.metric": {"ci": [low, high] or None, "n": items}} for the evaluation metrics that carry them
    (`<metric>_ci`, `<metric>_n` in results.json, or `run_results`' flattened training validation), and
    `why`, the metric's `_ci_method`, where it has no interval but a method that says why (a training run's
    split over too few groups, modules/val_figures.py: report.why_no_interval reads it)."""
    return _uncertainty(results, "")


def run_results(manifest: dict) -> dict:
    """What a run's uncertainty is read from (`evaluation_uncertainty`): an evaluation's results, or a
    training run's final validation named as `run_metrics` names it, `val/<split>/<metric>` with its
    `_ci` and `_n` beside it (`val/domain/bpb_ci`), and the other figures its stage measured, under the
    names `run_metrics` gives them (the retriever stage's `retrieval.eval_queries.finetuned.hit@8`)."""
    results = manifest.get("results") or {}
    if manifest.get("kind", "train") != "train":
        return results
    # A training stage's own results (annotate's and bootstrap's output record) beside what it measured.
    measured = dict(manifest.get("metrics") or {})
    after, _, _ = measured.pop("after", None) or {}, measured.pop("before", None), measured.pop("change", None)
    validation = {f"val/{split}/{key}": v for split, values in after.items() for key, v in values.items()}
    return {**results, **measured, **validation}
