"""`stage=retriever`: passages -> synthetic training data -> contrastive training -> `DIR/model/`.

Each step's output stays in the run folder and a rerun with the same `hydra.run.dir` reuses it:
`passages.jsonl`, `synthetic/{train.jsonl,heldout_queries.jsonl,report.json}`, `checkpoints/last.ckpt`.
"""

import hashlib
import json
import logging
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic, write_text_atomic
from chipadapt.manifest import RunManifest
from chipadapt.modules.bi_encoder import BiEncoderModule
from chipadapt.pipeline import build_trainer, fit, resume_checkpoint
from chipadapt.quiet import silence_known_noise
from chipadapt.report import console
from chipadapt.retrieval.build import load_passages, make_retrievers
from chipadapt.retrieval.datamodule import RetrieverDataModule
from chipadapt.retrieval.encoder import TextEncoder, resolve_encoder_folder
from chipadapt.retrieval.metrics import retrieval_metrics
from chipadapt.retrieval.passages import read_passages, write_passages
from chipadapt.retrieval.queries import Query, read_queries, write_queries
from chipadapt.retrieval.tevatron_data import read_tevatron

log = logging.getLogger(__name__)


def _plain(node):
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _held_out(query_id: str, fraction: float) -> bool:
    # By a hash of the id: the same groups are held out in every run over the same data.
    return int(hashlib.sha256(query_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def synthesize_data(cfg: DictConfig, passages, out: Path) -> Path:
    """Write `out/synthetic/train.jsonl` (all groups, Tevatron format) unless it is there already."""
    from chipadapt.retrieval.retrievers import BM25Retriever
    from chipadapt.retrieval.synthetic import LLMHelper, synthesize

    target = out / "synthetic" / "train.jsonl"
    if target.is_file():
        log.info("reusing synthetic training data in %s", target)
        return target
    syn = cfg.retriever.synthetic
    llm, folder = None, None
    if syn.method == "llm":
        from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer, resolve_model_folder

        folder = resolve_model_folder(cfg.model)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = load_causal_lm(folder, "bfloat16" if device == "cuda" else "float32", "sdpa").to(device).eval()
        llm = LLMHelper(model, load_tokenizer(folder), syn.batch_size, syn.max_new_tokens, syn.passage_chars)
    miner = BM25Retriever(**_plain(cfg.retriever.bm25))
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
        cfg.seed,
    )
    report["generator_model"] = str(folder) if llm else None
    write_json_atomic(out / "synthetic" / "report.json", report)
    write_text_atomic(target, "".join(json.dumps(g.to_tevatron(), ensure_ascii=False) + "\n" for g in groups))
    return target


def evaluate_encoders(cfg: DictConfig, passages, query_sets: dict[str, list[Query]], encoders: dict) -> dict:
    """hit@k / MRR of BM25 and each encoder on each query set: {query_set: {retriever: metrics}}."""
    rcfg = cfg.retriever
    dense = {k: v for k, v in _plain(rcfg.encoder).items() if k not in ("path", "package")}
    retrievers = make_retrievers(encoders, {**dense, "batch_size": rcfg.eval_batch_size}, _plain(rcfg.bm25), None)
    ks, mrr_k = list(rcfg.eval_ks), 10
    results = {name: {} for name in query_sets}
    for rname, retriever in retrievers.items():
        retriever.index(passages)
        for qname, queries in query_sets.items():
            hits = retriever.search([q.query for q in queries], max([*ks, mrr_k]))
            results[qname][rname] = retrieval_metrics(
                [[pid for pid, _ in row] for row in hits], [q.positive_ids for q in queries], ks, mrr_k
            )
    return results


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    silence_known_noise()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    rcfg = cfg.retriever

    passages_file = out / "passages.jsonl"
    if rcfg.passages:
        passages = read_passages(rcfg.passages)
    elif passages_file.is_file():
        passages = read_passages(passages_file)
    else:
        passages = load_passages(None, _plain(cfg.passages))
        write_passages(passages, passages_file)
    log.info("%d passages", len(passages))

    if rcfg.train_file:
        files = [rcfg.train_file] if isinstance(rcfg.train_file, str) else list(rcfg.train_file)
        train_file = ",".join(files)
        groups = [g for f in files for g in read_tevatron(f)]
    else:
        train_file = synthesize_data(cfg, passages, out)
        groups = read_tevatron(train_file)
    known = {p.id for p in passages}
    train_groups, heldout = [], []
    for i, g in enumerate(groups):
        (
            heldout
            if _held_out(f"{g.get('method', '')}{g.get('query_id', i)}", rcfg.heldout_fraction)
            else train_groups
        ).append(g)
    if not train_groups:
        raise ChipadaptError(
            f"{train_file}: every group is held out (retriever.heldout_fraction={rcfg.heldout_fraction})"
        )
    heldout_queries = [
        Query(
            str(g.get("query_id", i)),
            g["query"],
            tuple(p["docid"] for p in g["positive_passages"] if p.get("docid") in known),
        )
        for i, g in enumerate(heldout)
    ]
    heldout_queries = [q for q in heldout_queries if q.positive_ids]
    if heldout_queries:
        write_queries(heldout_queries, out / "synthetic" / "heldout_queries.jsonl")
    manifest.update(
        "data",
        {
            "passages": len(passages),
            "train_groups": len(train_groups),
            "heldout_groups": len(heldout),
            "train_file": str(train_file),
        },
    )

    enc = rcfg.encoder
    folder = resolve_encoder_folder(enc.path, enc.package)
    encoder = TextEncoder(
        folder, enc.pooling, enc.query_prefix, enc.passage_prefix, enc.max_query_tokens, enc.max_passage_tokens
    )
    encoder.model.train()
    datamodule = RetrieverDataModule(
        train_groups, heldout, encoder, rcfg.train.n_passages, rcfg.train.batch_size, cfg.seed, rcfg.train.positive
    )
    module = BiEncoderModule(encoder, rcfg.train.n_passages, rcfg.train.temperature, cfg.optim)

    trainer, _ = build_trainer(cfg, out, accumulation=1)
    fit(trainer, module, datamodule, resume_checkpoint(cfg, out))
    encoder.save(out / "model")

    metrics = {"global_step": trainer.global_step, "val": module.val_results}
    query_sets = {}
    if heldout_queries:
        query_sets["synthetic_heldout"] = heldout_queries
    if rcfg.eval_queries:
        try:
            query_sets["eval_queries"] = read_queries(rcfg.eval_queries, known_ids=known)
        except ChipadaptError as err:
            log.warning("retriever.eval_queries not evaluated: %s", err)
    if query_sets and rcfg.evaluate_after:
        base = {
            "base": {"path": enc.path, "package": enc.package},
            "finetuned": {"path": str(out / "model"), "package": None},
        }
        metrics["retrieval"] = evaluate_encoders(cfg, passages, query_sets, base)
        write_json_atomic(out / "results.json", {"retrieval": metrics["retrieval"]})
        from rich.table import Table

        for qname, by_retriever in metrics["retrieval"].items():
            table = Table(title=f"retrieval on {qname} ({len(query_sets[qname])} queries)")
            for column in ("retriever", "hit@1", "hit@5", "hit@8", "hit@20", "mrr@10"):
                table.add_column(column)
            for rname, m in by_retriever.items():
                table.add_row(rname, *(f"{m[c]:.3f}" for c in ("hit@1", "hit@5", "hit@8", "hit@20", "mrr@10")))
            console.print(table)
    manifest.update("metrics", metrics)
    log.info("encoder saved to %s", out / "model")
    return metrics
