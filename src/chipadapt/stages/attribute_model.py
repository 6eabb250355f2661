"""`stage=attribute_model`, SteerLM step 1: the LM with a regression head trained on human-labelled
conversations; reports per-attribute MAE and Spearman against a constant-mean baseline."""

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.table import Table

from chipadapt.batch_plan import batch_plan
from chipadapt.manifest import RunManifest
from chipadapt.models.hf_folder import load_tokenizer, save_hf_folder
from chipadapt.report import console
from chipadapt.stages.common import (
    begin,
    check_seq_len,
    publish_if_finite,
    record_data_inputs,
    starting_model,
    train_module,
)


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    begin(cfg)
    folder = starting_model(cfg, manifest)
    check_seq_len(cfg, folder)
    record_data_inputs(cfg, manifest)
    tokenizer = load_tokenizer(folder)
    datamodule = instantiate(cfg.stage.datamodule)(tokenizer=tokenizer)
    datamodule.setup("fit")
    manifest.update("data", datamodule.stats)
    module = instantiate(cfg.stage.module)(
        model_folder=folder,
        attributes=datamodule.attributes,
        pad_token_id=datamodule.pad_id,
        label_means=datamodule.label_means,
    )
    trained = train_module(
        cfg,
        out,
        manifest,
        module,
        datamodule,
        save=lambda trainer: publish_if_finite(
            cfg, out, trainer, module.model, lambda: save_hf_folder(module.model, tokenizer, out / "model")
        ),
        accumulation=batch_plan(cfg.data, cfg.trainer).accumulation,
    )
    table = Table(title="Attribute model on held-out conversations (baseline: each attribute's training mean)")
    for column in ("attribute", "n", "MAE", "baseline MAE", "Spearman"):
        table.add_column(column, justify="left" if column == "attribute" else "right")
    for name, m in trained.after.items():
        table.add_row(name, str(m["n"]), f"{m['mae']:.3f}", f"{m['baseline_mae']:.3f}", f"{m['spearman']:+.3f}")
    console.print(table)
    metrics = {"val": trained.after, "global_step": trained.trainer.global_step}
    manifest.update("metrics", metrics)
    return metrics
