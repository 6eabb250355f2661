"""The retriever's training data: synthetic groups written into the run folder (a rerun in the same
folder reuses them while their settings and inputs are unchanged: io/built_from.py), and the split of
groups into training and held-out queries."""

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.data.holdout import held_out
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.built_from import reusable, write_built
from chipadapt.retrieval.built_inputs import synthesis_inputs
from chipadapt.retrieval.passages import Passage
from chipadapt.retrieval.queries import Query

log = logging.getLogger(__name__)


def plain(node):
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def synthesize_training_file(
    syn: DictConfig,
    bm25: DictConfig,
    model: DictConfig,
    passages: list[Passage],
    out: Path,
    seed: int,
    resumed: str | None = None,
) -> Path:
    """Write `out/synthetic/train.jsonl` (all groups, Tevatron format) unless it is there already, built
    from the same settings and inputs. `model`: the causal LM that writes and judges the questions
    (method=llm). `resumed`: the checkpoint this run resumes (trained on the file there)."""
    from chipadapt.models.inference import load_inference_model
    from chipadapt.retrieval.retrievers import BM25Retriever
    from chipadapt.retrieval.synthetic import LLMHelper, synthesize

    target = out / "synthetic" / "train.jsonl"
    built_from = synthesis_inputs(plain(syn), plain(bm25), model, passages, seed)
    if reusable(target, built_from, "train on it as given with retriever.train_file=FILE", resumed):
        return target
    llm, folder = None, None
    if syn.method == "llm":
        loaded = load_inference_model(model)
        folder = loaded.folder
        llm = LLMHelper(loaded.model, loaded.tokenizer, syn.batch_size, syn.max_new_tokens, syn.passage_chars)
    miner = BM25Retriever(**plain(bm25))
    miner.index(passages)
    groups, report = synthesize(
        passages,
        syn.num_samples,
        syn.method,
        miner,
        llm,
        syn.mine_depth,
        syn.judge_depth,
        syn.judge_margin,
        syn.num_negatives,
        syn.near_duplicate_jaccard,
        syn.min_passage_chars,
        seed,
        styles=plain(syn.styles),
    )
    report["generator_model"] = str(folder) if llm else None
    write_json_atomic(out / "synthetic" / "report.json", report)
    write_built(target, "".join(json.dumps(g.to_tevatron(), ensure_ascii=False) + "\n" for g in groups), built_from)
    return target


def split_groups(groups: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """(training, held out): by a hash of each group's method and query id, the same in every run."""
    train, val = [], []
    for i, g in enumerate(groups):
        (val if held_out(f"{g.get('method', '')}{g.get('query_id', i)}", fraction) else train).append(g)
    return train, val


def heldout_queries(groups: list[dict], known_ids: set[str]) -> list[Query]:
    """Held-out groups as evaluation queries: their positives that are passages of the corpus."""
    queries = [
        Query(
            str(g.get("query_id", i)),
            g["query"],
            tuple(p["docid"] for p in g["positive_passages"] if p.get("docid") in known_ids),
        )
        for i, g in enumerate(groups)
    ]
    return [q for q in queries if q.positive_ids]
