"""`stage=attribute_model`, SteerLM step 1: the LM with a regression head trained on human-labelled
conversations; reports per-attribute MAE against a constant-mean baseline (paired on the same held-out
conversations) and Spearman, each with its 95% interval; its folder records which heads had labels."""

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.table import Table

from chipadapt.batch_plan import batch_plan
from chipadapt.manifest import RunManifest
from chipadapt.models.hf_folder import load_tokenizer, save_hf_folder
from chipadapt.modules.attribute_figures import interval_text
from chipadapt.report import console, why_no_interval
from chipadapt.stages.common import (
    begin,
    check_seq_len,
    publish_if_finite,
    record_data_inputs,
    starting_model,
    train_module,
)
from chipadapt.steerlm.attribute_record import record_train_labels


def _cell(figures: dict, name: str, signed: bool = False) -> str:
    """`0.412 [0.301, 0.530]`; with no interval, the reason its `_ci_method` gives (`0.412 (interval n/a: n=4
    groups of the 20 items, too few)`), not the bare value, which would read as exact."""
    text = interval_text(figures[name], figures[f"{name}_ci"], signed=signed)
    why = why_no_interval(figures.get(f"{name}_ci_method")) if not figures[f"{name}_ci"] else ""
    return f"{text} {why}" if why else text


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

    def publish() -> None:
        # Which heads had labels to learn from: annotate and bootstrap rate with those only.
        record_train_labels(module.model.config, datamodule.train_labels)
        save_hf_folder(module.model, tokenizer, out / "model")

    trained = train_module(
        cfg,
        out,
        manifest,
        module,
        datamodule,
        save=lambda trainer: publish_if_finite(cfg, out, trainer, module.model, publish),
        accumulation=batch_plan(cfg.data, cfg.trainer).accumulation,
    )
    table = Table(
        title="Attribute model on held-out conversations, 95% intervals over their groups (OASST: message trees, "
        "held out together; baseline: each attribute's training mean; model minus baseline paired on the same "
        "conversations)"
    )
    for column in ("attribute", "n (groups)", "MAE", "baseline MAE", "MAE - baseline", "p", "Spearman"):
        table.add_column(column, justify="left" if column == "attribute" else "right")
    for name, m in trained.after.items():
        paired = m["mae_minus_baseline"]
        table.add_row(
            name,
            f"{m['n']} ({m.get('groups', m['n'])})",
            _cell(m, "mae"),
            _cell(m, "baseline_mae"),
            interval_text(paired["difference"], paired["ci"], signed=True) + f" {paired['verdict']}",
            f"{paired['p']:.3g}",
            _cell(m, "spearman", signed=True) if m["spearman"] is not None else f"undefined: {m['spearman_undefined']}",
        )
    console.print(table)
    metrics = {"val": trained.after, "global_step": trained.trainer.global_step}
    manifest.update("metrics", metrics)
    return metrics
