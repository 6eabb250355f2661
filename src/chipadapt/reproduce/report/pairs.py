"""The paired comparisons the report's verdicts rest on: two steps' per-item records of one task matched
item by item (eval/paired.py), or two scores of the same items in one step (a retriever against another
on the same questions, an answer with and without retrieved context).

Every function returns None where a step did not run or wrote no per-item file (runs from before they
were written): the verdict is then "not measured", never a guess from the summary figures.
Two steps' records are paired only where they are the same items, as compare.py checks them
(eval/same_items.py: the same question, reference and scored text under each id, the same limits on
what is scored): otherwise the comparison is a NotPaired with the reason, and the verdict "not measured".
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from chipadapt.eval.items import items_file, read_items
from chipadapt.eval.paired import GroupsDiffer, PairedDifference, ScoresDiffer, paired_difference
from chipadapt.eval.paired_compare import task_settings
from chipadapt.eval.same_items import NotSameItems, same_items, same_settings
from chipadapt.report import bracketed
from chipadapt.reproduce.report import domain_bpb
from chipadapt.reproduce.report.context import Context
from chipadapt.reproduce.report.domain_bpb import GENERAL_SPLIT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotPaired:
    """Two steps' records of a task that are not the same items: why, in place of a difference.
    False as a condition, like the None of a step without per-item records, so that every path that
    has nothing to pair takes it; power.verdict gives its reason."""

    reason: str

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class DocumentPair:
    """A corpus_ppl comparison: items are documents of very different lengths, so the size that would
    resolve a difference is also given in tokens."""

    d: PairedDifference
    tokens_per_doc: float
    docs: dict[str, int]  # matched documents per split
    measure: str  # the score compared: domain_all.bpb (pooled), domain_mean.bpb (older runs) or general.bpb

    @property
    def fallback(self) -> bool:
        """Compared on the mean of sources: the runs predate the pooled domain_all.bpb."""
        return self.measure == domain_bpb.MEAN_SCORE

    @property
    def thin(self) -> list[str]:
        """Splits with a single matched document, where the test is stratified by source (the fallback): a
        source's mean over one document is one draw, and its sampling variance beyond the swap of its two
        runs is missing from the interval. The pooled measure weighs every document in one ratio."""
        return [split for split, n in self.docs.items() if n < 2] if self.fallback else []


def step_items(ctx: Context, step: str, task: str) -> dict[str, dict] | None:
    if not ctx.has(step):
        return None
    path = items_file(ctx.folder(step), task)
    return read_items(path) if path.is_file() else None


def same_step_items(ctx: Context, a: str, b: str, task: str) -> tuple[dict, dict] | NotPaired | None:
    """Steps a's and b's items of `task` that are the same items (same_run_items)."""
    return same_run_items(
        task, (a, ctx.folder(a), step_items(ctx, a, task)), (b, ctx.folder(b), step_items(ctx, b, task))
    )


def same_run_items(
    task: str, a: tuple[str, Path, dict | None], b: tuple[str, Path, dict | None]
) -> tuple[dict, dict] | NotPaired | None:
    """Two runs' items of `task`, each run given as (label, folder with its manifest, items), that are the
    same items (eval/same_items.py, as compare.py pairs them): b's records that differ from a's with the
    same id left out; NotPaired where the runs' limits on what is scored differ or most shared ids hold
    other items; None where either run wrote no items."""
    (a_label, a_folder, a_items), (b_label, b_folder, b_items) = a, b
    if a_items is None or b_items is None:
        return None
    try:
        same_settings(task, a_label, b_label, task_settings(a_folder, task), task_settings(b_folder, task))
        b_items, left_out = same_items(task, a_label, b_label, a_items, b_items)
    except NotSameItems as err:
        log.warning("report: %s not paired with %s: %s", b_label, a_label, err)
        return NotPaired(str(err))
    if left_out:
        log.warning(
            "report: %s: %d item(s) of %s differ from %s's with the same id; left out (first: %s)",
            task,
            len(left_out),
            b_label,
            a_label,
            left_out[0],
        )
    return a_items, b_items


def paired_or_why(test, *args) -> PairedDifference | NotPaired | None:
    """test(*args) (a paired test of two runs' items), or NotPaired with the reason where the runs score the
    metric in other forms (ScoresDiffer) or put an item in other groups (GroupsDiffer): that comparison is
    "not measured", not the end of the whole report."""
    try:
        return test(*args)
    except (ScoresDiffer, GroupsDiffer) as err:
        log.warning("report: not paired: %s", err)
        return NotPaired(str(err))


def between(ctx: Context, a: str, b: str, dotted: str) -> PairedDifference | NotPaired | None:
    """b - a of 'task.metric' over the items both steps scored that are the same items."""
    task, _, metric = dotted.partition(".")
    found = same_step_items(ctx, a, b, task)
    if not found:
        return found
    return paired_or_why(paired_difference, *found, metric)


def within(items: dict[str, dict] | None, metric_a: str, metric_b: str) -> PairedDifference | None:
    """metric_b - metric_a over the items that carry both (one run, two scores of each item)."""
    if not items:
        return None

    def only(metric: str) -> dict[str, dict]:
        return {i: {"scores": {"score": item["scores"].get(metric)}} for i, item in items.items()}

    return paired_difference(only(metric_a), only(metric_b), "score")


def documents(ctx: Context, a: str, b: str, domain: bool = True) -> DocumentPair | NotPaired | None:
    """b - a of held-out bits per byte, paired by document: the domain documents pooled (corpus_ppl's
    domain_all.bpb; domain_mean.bpb where a run predates it, report/domain_bpb.py), or WikiText-2's
    (`domain=False`). Two tokenizers' runs on the same text pair: every byte of a document is scored
    (eval/tasks/perplexity.py), and runs from before that differ by the first token only (eval/same_items.py)."""
    found = same_step_items(ctx, a, b, "corpus_ppl")
    if not found:
        return found
    a_items, b_items = found
    sources = domain_bpb.source_metrics(a_items)
    if domain:
        d = paired_or_why(domain_bpb.paired, a_items, b_items) if sources else None
        pooled = domain_bpb.pooled(a_items) and domain_bpb.pooled(b_items)
        measure = domain_bpb.POOLED_SCORE if pooled else domain_bpb.MEAN_SCORE
        metrics = sources
    else:
        measure = f"{GENERAL_SPLIT}.bpb"
        d, metrics = paired_or_why(paired_difference, a_items, b_items, measure), [measure]
    if not d:  # None (nothing matched) or NotPaired (why)
        return d
    matched = {
        m: [i for i, item in a_items.items() if m in item["scores"] and m in (b_items.get(i) or {}).get("scores", {})]
        for m in metrics
    }
    ids = [i for m in metrics for i in matched[m]]
    tokens = sum(a_items[i].get("tokens") or 0 for i in ids) / max(len(ids), 1)
    return DocumentPair(d, tokens, {m.removesuffix(".bpb"): len(v) for m, v in matched.items()}, measure)


def change_pct(d: PairedDifference) -> tuple[float, float, float]:
    """b - a as a share of a, in percent, with its interval (a is fixed: the interval scales)."""
    return (100 * d.diff / d.a, 100 * d.ci[0] / d.a, 100 * d.ci[1] / d.a) if d.a else (0.0, 0.0, 0.0)


def diff_text(d: PairedDifference, unit: str = "items", digits: int = 3) -> str:
    return (
        f"{d.diff:+.{digits}f} {bracketed(*d.ci, d.n, lambda end: f'{end:+.{digits}f}')} over {d.n} {unit} "
        f"({d.test}, p = {d.p:.2g})"
    )


def pct_text(d: PairedDifference) -> str:
    change, low, high = change_pct(d)
    return f"{change:+.1f}% {bracketed(low, high, d.n, lambda end: f'{end:+.1f}')}"
