"""(query, candidate) pairs for the cross-encoder: per query its positive and `n_passages - 1` hard
negatives, from Tevatron-format groups (the synthetic data of `stage=retriever`).

The groups' negatives are BM25's, already cleared of false negatives by the synthetic-data guards.
A share of the groups, chosen by a hash of the query id (the same ones in every run), is held out
for validation. Left out of training, as the retriever leaves them out: the groups asking an evaluation
question (`reranker.eval_queries`; null: the `retriever.eval_queries` the retriever run that built the
file read, found in its manifest.json) and those asking a held-out group's query about the same passages.
"""

import json
import logging
from pathlib import Path

from chipadapt.data.base import TrainingDataModule
from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.pair_scorer import PairScorer
from chipadapt.retrieval.tevatron_data import GroupDataset, read_tevatron
from chipadapt.retrieval.training_data import eval_questions, group_order, split_groups, without_heldout_questions

log = logging.getLogger(__name__)


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
        eval_queries: str | None = None,
    ):
        """`styles`: only groups of those query styles (None: all); `eval_queries`: the evaluation questions
        whose copies are left out of training (None: those of the retriever runs that built the files)."""
        # (index, epoch) items: which negatives each epoch sees comes from the sampler, also on resume.
        super().__init__(batch_size, 0, seed, with_epoch=True)
        if n_passages < 2:
            raise ChipadaptError(f"reranker.train.n_passages={n_passages}: at least 2 (the positive and a negative)")
        files = [train_file] if isinstance(train_file, (str, Path)) else list(train_file)
        groups = [g for f in files for g in read_tevatron(f) if g.get("negative_passages")]
        if styles is not None:
            groups = [g for g in groups if g.get("style", "question") in list(styles)]
        train, val = split_groups(groups, heldout_fraction)
        named = {eval_queries: "reranker.eval_queries"} if eval_queries else retriever_questions(files)
        self.eval_queries = list(named)
        asked = [q for path, key in named.items() for q in eval_questions(path, key)]
        train, copies = without_heldout_questions(train, val, asked, "reranker.eval_queries")
        if not train:
            raise ChipadaptError(
                f"reranker.train_file: no training groups with negatives in {', '.join(map(str, files))} (or every "
                "one is held out or asks an evaluation question)"
            )
        self.scorer = scorer
        self.train_set = GroupDataset(train, n_passages, seed, "first")
        if val:
            self.val_sets = {"synthetic_heldout": GroupDataset(val, n_passages, seed + 1, "first")}
        self.stats = {
            "train_sequences": len(train),
            "val_groups": len(val),
            **copies,
            "eval_queries": self.eval_queries,
            # What a checkpoint records, to tell a resume on other groups (stages/checkpoint_records.py).
            "training_order": group_order(train),
        }

    def collate(self, items: list[tuple[str, list[str]]]) -> dict:
        queries = [q for q, group in items for _ in group]
        passages = [p for _, group in items for p in group]
        return {"pairs": self.scorer.tokenize(queries, passages)}


def retriever_questions(files: list) -> dict[str, str]:
    """{file: the key that names it} of the `retriever.eval_queries` the retriever runs that built `files`
    (RUN/synthetic/train.jsonl, beside RUN/manifest.json) read; a file of no retriever run is told: its
    groups are checked against no evaluation question."""
    found = {}
    for file in files:
        run = Path(file).resolve().parent.parent
        try:
            record = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
            config = record["config"]
            built = config["stage"]["name"] == "retriever" and config["retriever"]["train_file"] is None
            path = config["retriever"]["eval_queries"] if built else None
        except (OSError, ValueError, KeyError, TypeError):
            built, path = False, None
        if not built:
            log.warning(
                "reranker.train_file %s: not the synthetic data of a retriever run (no %s of stage=retriever), so "
                "its groups are not checked against evaluation questions; reranker.eval_queries=FILE checks them",
                file,
                run / "manifest.json",
            )
        elif path and path not in found:
            found[path] = f"{run / 'manifest.json'} retriever.eval_queries"
    return found
