"""`stage=reranker`: a cross-encoder trained from the retriever's encoder weights on its synthetic
groups (each query's positive against its hard negatives) -> `DIR/model/`, which `eval=retrieval`
uses to rerank the first stage's top-k (`reranker.path` in conf/retrievers/default.yaml)."""

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from chipadapt.manifest import RunManifest
from chipadapt.retrieval.pair_scorer import PairScorer
from chipadapt.retrieval.reranker_datamodule import NUMBERINGS, PER_FILE, SEQUENCE, RerankerDataModule
from chipadapt.stages.common import begin, publish_if_finite, train_module
from chipadapt.stages.resume_decision import resume_checkpoint
from chipadapt.stages.resume_settings import checkpoint_metadata

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    begin(cfg)
    scorer = instantiate(cfg.stage.scorer)
    datamodule = resumed_datamodule(cfg, out, scorer)
    manifest.update("data", datamodule.stats)
    files = cfg.reranker.train_file
    for i, path in enumerate([files] if isinstance(files, str) else list(files)):
        manifest.add_input(f"reranker.train_file.{i}", path)
    for i, path in enumerate(datamodule.eval_queries):  # whose questions' copies were left out of training
        manifest.add_input(f"reranker.eval_queries.{i}", path)
    module = instantiate(cfg.stage.module)(scorer=scorer)
    trained = train_module(
        cfg,
        out,
        manifest,
        module,
        datamodule,
        save=lambda trainer: publish_if_finite(cfg, out, trainer, scorer.model, lambda: scorer.save(out / "model")),
    )
    metrics = {"global_step": trained.trainer.global_step, "val": trained.after}
    manifest.update("metrics", metrics)
    return metrics


def resumed_datamodule(cfg: DictConfig, out: Path, scorer: PairScorer) -> RerankerDataModule:
    """The datamodule, holding out the groups the checkpoint this run resumes held out. A fresh run numbers the
    groups without a query_id along the list of files, as a retriever run reads retriever.train_file; a
    checkpoint records its numbering (the datamodule's state); one written before that numbered per file.
    Its numbering is kept, so the run validates on the groups it held out and never trains on one of them:
    renumbered, it would (a start over, resume=false, holds out a retriever run's groups). So are, under
    reranker.heldout_fraction=null, the different shares of a list's files, which a fresh run is refused."""
    resumed = resume_checkpoint(cfg, out, check=False)

    def build(numbering: str) -> RerankerDataModule:
        # `resumed`: a checkpoint of a run that, with reranker.heldout_fraction=null, kept the different shares
        # of a list's files (before such a list was refused) is resumed on those shares, and told.
        return instantiate(cfg.stage.datamodule)(scorer=scorer, heldout_numbering=numbering, resumed=resumed)

    content = checkpoint_metadata(Path(resumed)) if resumed else None
    if content is None:
        return build(SEQUENCE)
    state = content.get(RerankerDataModule.__qualname__)
    recorded = state.get("heldout_numbering") if isinstance(state, dict) else None
    if recorded in NUMBERINGS:
        return build(recorded)
    datamodule = build(PER_FILE)
    if not datamodule.numbering_matters:
        return datamodule
    log.warning(
        "resuming %s, written before the reranker numbered the groups without a query_id along the list of "
        "reranker.train_file (as a retriever run reads retriever.train_file): they are numbered per file, as it "
        "did, so this run holds out the groups it held out (manifest: data.heldout_numbering=%s); a start over "
        "(resume=false) holds out the groups a retriever run that read that list held out",
        resumed,
        PER_FILE,
    )
    return datamodule
