"""(query, candidate) pairs for the cross-encoder: per query its positive and `n_passages - 1` hard
negatives, from Tevatron-format groups (the synthetic data of `stage=retriever`).

The groups' negatives are BM25's, already cleared of false negatives by the synthetic-data guards.
A share of the groups, chosen by a hash of the query id (the same ones in every run), is held out
for validation.
"""

from pathlib import Path

from chipadapt.data.base import TrainingDataModule
from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.pair_scorer import PairScorer
from chipadapt.retrieval.tevatron_data import GroupDataset, read_tevatron
from chipadapt.retrieval.training_data import split_groups


class RerankerDataModule(TrainingDataModule):
    def __init__(
        self,
        train_file: str | list[str],
        heldout_fraction: float,
        styles: list[str] | None,
        scorer: PairScorer,
        n_passages: int,
        batch_size: int,
        seed: int,
    ):
        """`styles`: only groups of those query styles (None: all)."""
        # (index, epoch) items: which negatives each epoch sees comes from the sampler, also on resume.
        super().__init__(batch_size, 0, seed, with_epoch=True)
        if n_passages < 2:
            raise ChipadaptError(f"reranker.train.n_passages={n_passages}: at least 2 (the positive and a negative)")
        files = [train_file] if isinstance(train_file, (str, Path)) else list(train_file)
        groups = [g for f in files for g in read_tevatron(f) if g.get("negative_passages")]
        if styles is not None:
            groups = [g for g in groups if g.get("style", "question") in list(styles)]
        train, val = split_groups(groups, heldout_fraction)
        if not train:
            raise ChipadaptError(
                f"reranker.train_file: no training groups with negatives in {', '.join(map(str, files))}"
            )
        self.scorer = scorer
        self.train_set = GroupDataset(train, n_passages, seed, "first")
        if val:
            self.val_sets = {"synthetic_heldout": GroupDataset(val, n_passages, seed + 1, "first")}
        self.stats = {"train_sequences": len(train), "val_groups": len(val)}

    def collate(self, items: list[tuple[str, list[str]]]) -> dict:
        queries = [q for q, group in items for _ in group]
        passages = [p for _, group in items for p in group]
        return {"pairs": self.scorer.tokenize(queries, passages)}
