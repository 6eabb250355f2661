"""Held-out domain bits per byte, the measure the report compares models on: corpus_ppl's `domain_all.bpb`,
every held-out domain document pooled (each document one item), so two models' difference is a plain
paired permutation test over documents. Several sources hold out only one or two documents, so a per-source
interval (and `domain_mean.bpb`'s single-run interval, a bootstrap stratified by source, eval/intervals.py's
mean_of_ratios) is degenerate for them.

Runs from before `domain_all.bpb` was written carry only `domain_mean.bpb`, the unweighted mean of the
per-source bits per byte: the report falls back to it there (compared by the stratified permutation test,
eval/paired.py's paired_domain_mean) and says so (`FALLBACK_NOTE`), rather than fail.
"""

from chipadapt.eval.paired import PairedDifference, paired_difference, paired_domain_mean
from chipadapt.reproduce.report.context import get

POOLED = "corpus_ppl.domain_all.bpb"
MEAN = "corpus_ppl.domain_mean.bpb"  # the fallback
POOLED_SCORE = POOLED.removeprefix("corpus_ppl.")  # the score each domain document carries
MEAN_SCORE = MEAN.removeprefix("corpus_ppl.")
GENERAL_SPLIT = "general"  # corpus_ppl's WikiText-2 split; every other `<split>.bpb` is a corpus source
FALLBACK_NOTE = (
    "Some runs here predate corpus_ppl's pooled `domain_all.bpb`: their domain bpb is `domain_mean.bpb` (the "
    "unweighted mean of the per-source bits per byte), compared by a paired permutation test stratified by "
    "source, which leaves out the sampling variance of a source with a single held-out document."
)


def key(results: dict | None) -> str:
    """The results key of a run's domain bpb: the pooled one, or the mean of sources where it predates it."""
    return MEAN if get(results, POOLED) is None and get(results, MEAN) is not None else POOLED


def value(results: dict | None) -> float | None:
    return get(results, key(results))


def ci(results: dict | None) -> tuple[float, float] | None:
    found = get(results, f"{key(results)}_ci")
    return tuple(found) if found else None


def with_method(results: dict | None) -> tuple:
    """(value, ci, `_ci_method`) of the run's domain bpb: what dapt_sweep.value_ci_text prints."""
    return value(results), ci(results), get(results, f"{key(results)}_ci_method")


def falls_back(results: list[dict | None]) -> bool:
    """Whether any of these runs' domain bpb is the mean of sources (they predate `domain_all.bpb`)."""
    return any(key(r) == MEAN for r in results if r)


def get_measure(results: dict | None, dotted: str):
    """`get`, with the domain bpb's fallback where `dotted` is the pooled key."""
    return value(results) if dotted == POOLED else get(results, dotted)


def pooled(items: dict[str, dict]) -> bool:
    return any(POOLED_SCORE in item["scores"] for item in items.values())


def source_metrics(items: dict[str, dict]) -> list[str]:
    """The per-source `<split>.bpb` scores of corpus_ppl items (not WikiText-2's, not the pooled one)."""
    names = dict.fromkeys(k for item in items.values() for k in item["scores"] if k.endswith(".bpb"))
    return [n for n in names if n not in (f"{GENERAL_SPLIT}.bpb", POOLED_SCORE)]


def paired(a_items: dict[str, dict], b_items: dict[str, dict]) -> PairedDifference | None:
    """b - a of held-out domain bpb over the documents both runs scored: the pooled `domain_all.bpb` (paired
    permutation test over documents), or, where either run predates it, domain_mean.bpb (the permutation
    test stratified by source)."""
    if pooled(a_items) and pooled(b_items):
        return paired_difference(a_items, b_items, POOLED_SCORE)
    metrics = source_metrics(a_items)
    return paired_domain_mean(a_items, b_items, metrics) if metrics else None
