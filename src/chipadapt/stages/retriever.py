"""`stage=retriever`: passages -> synthetic training data -> contrastive training -> `DIR/model/`.

Each step's output stays in the run folder and a rerun with the same `hydra.run.dir` reuses it:
`passages.jsonl`, `synthetic/{train.jsonl,heldout_queries.jsonl,report.json}`, `checkpoints/last.ckpt`.
"""

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic
from chipadapt.manifest import RunManifest
from chipadapt.report import console
from chipadapt.retrieval.build import load_passages
from chipadapt.retrieval.compare_encoders import compare_encoders, comparison_tables
from chipadapt.retrieval.passages import read_passages, write_passages
from chipadapt.retrieval.queries import read_queries, write_queries
from chipadapt.retrieval.tevatron_data import read_tevatron
from chipadapt.retrieval.training_data import heldout_queries, plain, split_groups, synthesize_training_file
from chipadapt.stages.common import begin, publish_if_finite, train_module

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    begin(cfg)
    rcfg = cfg.retriever
    passages_file = out / "passages.jsonl"
    if rcfg.passages:
        passages = read_passages(rcfg.passages)
    elif passages_file.is_file():
        passages = read_passages(passages_file)
    else:
        passages = load_passages(None, plain(cfg.passages))
        write_passages(passages, passages_file)
    log.info("%d passages", len(passages))

    if rcfg.train_file:
        files = [rcfg.train_file] if isinstance(rcfg.train_file, str) else list(rcfg.train_file)
        train_file = ",".join(files)
        groups = [g for f in files for g in read_tevatron(f)]
    else:
        train_file = synthesize_training_file(rcfg.synthetic, rcfg.bm25, cfg.model, passages, out, cfg.seed)
        groups = read_tevatron(train_file)
    train_groups, heldout = split_groups(groups, rcfg.heldout_fraction)
    if not train_groups:
        raise ChipadaptError(
            f"{train_file}: every group is held out (retriever.heldout_fraction={rcfg.heldout_fraction})"
        )
    known = {p.id for p in passages}
    held_queries = heldout_queries(heldout, known)
    if held_queries:
        write_queries(held_queries, out / "synthetic" / "heldout_queries.jsonl")
    manifest.update(
        "data",
        {
            "passages": len(passages),
            "train_groups": len(train_groups),
            "heldout_groups": len(heldout),
            "train_file": str(train_file),
        },
    )

    encoder = instantiate(cfg.stage.encoder)
    encoder.model.train()
    datamodule = instantiate(cfg.stage.datamodule)(train_groups=train_groups, val_groups=heldout, encoder=encoder)
    module = instantiate(cfg.stage.module)(encoder=encoder)
    trained = train_module(
        cfg,
        out,
        manifest,
        module,
        datamodule,
        save=lambda trainer: publish_if_finite(cfg, out, trainer, encoder.model, lambda: encoder.save(out / "model")),
    )

    metrics = {"global_step": trained.trainer.global_step, "val": trained.after}
    query_sets = {"synthetic_heldout": held_queries} if held_queries else {}
    if rcfg.eval_queries:
        try:
            query_sets["eval_queries"] = read_queries(rcfg.eval_queries, known_ids=known)
        except ChipadaptError as err:
            log.warning("retriever.eval_queries not evaluated: %s", err)
    if query_sets and rcfg.evaluate_after:
        encoders = {
            "base": {"path": rcfg.encoder.path, "package": rcfg.encoder.package},
            "finetuned": {"path": str(out / "model"), "package": None},
        }
        metrics["retrieval"] = compare_encoders(rcfg, passages, query_sets, encoders)
        write_json_atomic(out / "results.json", {"retrieval": metrics["retrieval"]})
        for table in comparison_tables(metrics["retrieval"], query_sets):
            console.print(table)
    manifest.update("metrics", metrics)
    log.info("encoder saved to %s", out / "model")
    return metrics
