"""`stage=reranker`: a cross-encoder trained from the retriever's encoder weights on its synthetic
groups (each query's positive against its hard negatives) -> `DIR/model/`, which `eval=retrieval`
uses to rerank the first stage's top-k (`reranker.path` in conf/retrievers/default.yaml)."""

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from chipadapt.manifest import RunManifest
from chipadapt.stages.common import begin, publish_if_finite, train_module


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    begin(cfg)
    scorer = instantiate(cfg.stage.scorer)
    datamodule = instantiate(cfg.stage.datamodule)(scorer=scorer)
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
