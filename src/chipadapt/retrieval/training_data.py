"""The retriever's training data: synthetic groups written into the run folder (a rerun in the same
folder reuses them while their settings and inputs are unchanged: io/built_from.py), and the split of
groups into training and held-out queries."""

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from chipadapt.data.blend import order_digest
from chipadapt.data.holdout import held_out, question_digest, without_copies
from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.built_from import reusable, write_built
from chipadapt.retrieval.built_inputs import synthesis_inputs
from chipadapt.retrieval.passages import Passage
from chipadapt.retrieval.queries import Query, read_queries

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
    from chipadapt.retrieval.synthetic import synthesize
    from chipadapt.retrieval.synthetic_llm import LLMHelper

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


def split_groups(groups: list[dict], fraction: float, first: int = 0) -> tuple[list[dict], list[dict]]:
    """(training, held out): by a hash of each group's method and query id, the same in every run; a group
    without a query id by its position in the sequence read, `first` that of `groups[0]` (files read as one
    sequence, as stages/retriever.py reads a list of retriever.train_file, split one by one)."""
    train, val = [], []
    for i, g in enumerate(groups, first):
        (val if held_out(f"{g.get('method', '')}{g.get('query_id', i)}", fraction) else train).append(g)
    return train, val


def eval_questions(path: str | None, key: str = "retriever.eval_queries") -> list[str]:
    """Every question of the evaluation file `key` names, whatever its split (none: null)."""
    if not path:
        return []
    try:
        return [q.query for q in read_queries(path)]
    except ChipadaptError as err:
        raise ChipadaptError(f"{key}: {err}") from None


def _positive_ids(group: dict) -> tuple[str, ...]:
    return tuple(sorted(str(p.get("docid")) for p in group.get("positive_passages") or []))


def without_heldout_questions(
    train: list[dict], heldout: list[dict], eval_questions: list[str], key: str = "retriever.eval_queries"
) -> tuple[list[dict], dict[str, int]]:
    """The training groups less those asking an evaluation question, and those asking a held-out group's
    query about the same positive passages (case, spacing and an end mark aside: data/holdout.py
    question_digest); and how many of each went. Held out by id only, the same question under another id
    (a second method, a training file given twice, a synthetic question that is word for word a benchmark
    one) would be trained on and then scored. An evaluation question is scored against the whole corpus,
    so it goes whatever its passages; a held-out group's query only with its passages, since a generic
    question ("What does this option do?") about another passage is another item. The passages stay:
    every figure searches the whole corpus, trained on by design; a question is what is held out."""

    def asked(group: dict) -> bytes:
        return question_digest(group["query"])

    def asked_of(group: dict) -> tuple[bytes, tuple[str, ...]]:
        return asked(group), _positive_ids(group)

    kept, evaluated = without_copies(train, asked, {question_digest(q) for q in eval_questions})
    kept, held = without_copies(kept, asked_of, {asked_of(g) for g in heldout})
    if evaluated or held:
        log.warning(
            "left out of training %d group(s) asking a %s question and %d asking a held-out group's query about "
            "its passages (manifest: data.eval_question_copies_dropped, data.held_out_copies_dropped)",
            evaluated,
            key,
            held,
        )
    return kept, {"eval_question_copies_dropped": evaluated, "held_out_copies_dropped": held}


def group_order(groups: list[dict]) -> dict:
    """The record of a training order of groups ({"hash": ...}, stats["training_order"]), which a checkpoint
    keeps so a resume on other groups (an evaluation question's copies left out since, another file) is
    told and recorded (stages/checkpoint_records.py). The groups' content in order: the per-epoch shuffle
    comes from the seed, which the resume checks compare."""
    digests = (hashlib.blake2b(json.dumps(g, sort_keys=True).encode(), digest_size=16).digest() for g in groups)
    return {"hash": order_digest(np.frombuffer(d, dtype=np.int64) for d in digests)}


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
