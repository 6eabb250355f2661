"""hit@k, recall@k and MRR@k of ranked hits: per query (so they can be compared query by query
between retrievers or runs) and their means over queries with 95% intervals (eval/items.py)."""

from chipadapt.eval.items import summarize


def query_scores(ranked: list[str], positives: tuple[str, ...], ks: list[int], mrr_k: int) -> dict:
    """One query's scores: hit@k (a positive in the top k), recall@k (share of its positives there;
    positives never retrieved count as missed), reciprocal rank of the first positive within mrr_k (else 0)."""
    gold = set(positives)
    ranked = list(dict.fromkeys(ranked))  # a passage retrieved twice counts once, at its best rank
    scores = {f"hit@{k}": any(pid in gold for pid in ranked[:k]) for k in ks}
    scores.update({f"recall@{k}": len(gold & set(ranked[:k])) / len(gold) for k in ks})
    first = next((rank for rank, pid in enumerate(ranked[:mrr_k], start=1) if pid in gold), None)
    scores[f"mrr@{mrr_k}"] = 1.0 / first if first else 0.0
    return scores


def retrieval_metrics(
    hits: list[list[str]], positives: list[tuple[str, ...]], ks: list[int], mrr_k: int
) -> dict[str, float]:
    """`hits[i]` is query i's ranked passage ids: the mean of each score over queries, its interval, and `queries`."""
    items = [{"scores": query_scores(ranked, gold, ks, mrr_k)} for ranked, gold in zip(hits, positives)]
    return {**summarize(items), "queries": len(hits)}
