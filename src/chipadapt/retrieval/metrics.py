"""hit@k, recall@k and MRR@k of ranked hits, computed by torchmetrics' retrieval metrics."""

import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalRecall


def retrieval_metrics(hits: list[list[str]], positives: list[tuple[str, ...]], ks: list[int], mrr_k: int) -> dict[str, float]:
    """`hits[i]` is query i's ranked passage ids. Positives that were not retrieved are appended below
    padding, so they count for no cut-off (torchmetrics ranks by score, and needs them to see recall's
    denominator)."""
    depth = max([*ks, mrr_k])
    preds, target, indexes = [], [], []
    for qi, (ranked, gold) in enumerate(zip(hits, positives)):
        gold = set(gold)
        ranked = list(dict.fromkeys(ranked))[:depth]
        relevant = [pid in gold for pid in ranked]
        relevant += [False] * (depth - len(ranked))                       # padding: retrieved nothing there
        relevant += [True] * len(gold - set(ranked))                      # missed positives, ranked last
        preds += [float(len(relevant) - rank) for rank in range(len(relevant))]  # positive: torchmetrics mishandles negative scores
        target += relevant
        indexes += [qi] * len(relevant)
    preds_t, target_t, index_t = torch.tensor(preds), torch.tensor(target), torch.tensor(indexes)
    results = {}
    for k in ks:
        results[f"hit@{k}"] = float(RetrievalHitRate(top_k=k)(preds_t, target_t, indexes=index_t))
    for k in ks:
        results[f"recall@{k}"] = float(RetrievalRecall(top_k=k)(preds_t, target_t, indexes=index_t))
    results[f"mrr@{mrr_k}"] = float(RetrievalMRR(top_k=mrr_k)(preds_t, target_t, indexes=index_t))
    results["queries"] = len(hits)
    return results
