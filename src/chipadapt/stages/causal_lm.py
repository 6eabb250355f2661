"""`stage=dapt`, `stage=sft` and `stage=steerlm`: one causal-LM recipe. The stages differ only in
their DataModule (packed documents, or conversations with the loss on answers and, for SteerLM,
attributes in the prompt), which each stage's YAML names with all its arguments."""

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt.batch_plan import batch_plan, run_plan
from chipadapt.data.chat_templates import StringTemplate
from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory
from chipadapt.manifest import RunManifest
from chipadapt.models.hf_folder import check_causal_lm_weights, load_tokenizer, save_hf_folder
from chipadapt.models.lora import merged_model
from chipadapt.modules.causal_lm import VAL_METRICS
from chipadapt.modules.val_figures import paired_change
from chipadapt.report import before_after_table, console, first_process
from chipadapt.scaleout.rank0_load import reads_weights
from chipadapt.scaleout.save import full_model_state, publishable_model
from chipadapt.stages.common import (
    begin,
    check_seq_len,
    diverged,
    non_finite_weights,
    record_data_inputs,
    starting_model,
    train_module,
)
from chipadapt.stages.validation_items import write_validation_items
from chipadapt.steerlm.attribute_record import record_attribute_order
from chipadapt.table_log import print_and_log
from chipadapt.tokenizer.report import reduction_table

log = logging.getLogger(__name__)


def check_optimized_metric(cfg: DictConfig, split_names: list[str]) -> None:
    """What a sweep optimises must be a metric this run will record (see `run`'s metrics): known once the
    validation splits are, so a misspelt name stops the search before its first trial trains."""
    name = cfg.get("optimized_metric")
    if not name:
        return
    known = [f"val/{split}/{metric}" for split in split_names for metric in VAL_METRICS]
    known += ["train_loss", "train_tokens_per_s"]
    if name not in known:
        raise ChipadaptError(
            f"optimized_metric: {name!r} is not a metric this run records (it has: {', '.join(known)})"
        )


def validation_change(before: dict, after: dict, groups: dict | None = None) -> dict[str, dict]:
    """{split: {metric: paired difference}} for the splits both validations kept items of; over whole groups
    where a split's items carry them (an SFT conversation's tree: `groups`, the datamodule's val_groups)."""
    groups = groups or {}
    change = {
        split: paired_change(before[split], after[split], groups.get(split)) for split in after if split in before
    }
    return {split: found for split, found in change.items() if found}


def tell_plan(planned: dict) -> None:
    """The plan's line, and its note, once: from global rank 0 (report.first_process), not from every
    process of a distributed run."""
    if first_process():
        if planned["note"]:
            log.warning("%s", planned["note"])
        log.info("%s", planned["text"])


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    begin(cfg)
    folder = starting_model(cfg, manifest)
    check_seq_len(cfg, folder)
    check_causal_lm_weights(folder)
    plan = batch_plan(cfg.data, cfg.trainer)
    record_data_inputs(cfg, manifest)

    tokenizer = load_tokenizer(folder)
    datamodule = instantiate(cfg.stage.datamodule)(tokenizer=tokenizer)
    # Prepared here, before the model loads, so data errors surface in seconds and the plan prints.
    datamodule.prepare_data()
    datamodule.setup("fit")
    manifest.update("data", datamodule.stats)
    print_and_log(datamodule.summary(), log)  # the blend in train.log too, not only on stdout
    check_optimized_metric(cfg, datamodule.val_split_names)
    module = instantiate(cfg.stage.module)(
        model_folder=folder, val_split_names=datamodule.val_split_names, read_weights=reads_weights(cfg.trainer)
    )

    # The steps and tokens the blend gives (whole global batches an epoch, data/resume_sampler.py)
    planned = run_plan(plan, datamodule.stats["train_sequences"], cfg.trainer, cfg.plan)
    tell_plan(planned)
    manifest.update("plan", planned)

    def save(trainer) -> None:
        full_state = full_model_state(trainer, module)  # FSDP: gathered on rank 0
        # Every process holds the same validation (its sums are reduced across them): all stop on it.
        if module.divergence():
            raise diverged(cfg, out, module.divergence())
        if not trainer.is_global_zero:
            return
        model, full_state = publishable_model(module, full_state)  # LoRA under FSDP: unsharded, on rank 0
        # Non-finite weights that no validation showed (limit_val_batches=0): never published either.
        bad_weights = non_finite_weights(
            full_state if full_state is not None else model.state_dict(), trainer.global_step
        )
        if bad_weights:
            raise diverged(cfg, out, bad_weights)
        if module.peft_cfg is not None and module.peft_cfg.get("r"):
            with atomic_directory(out / "adapter", "train") as tmp:  # the adapters alone, loadable with peft
                model.save_pretrained(tmp)
        template = getattr(datamodule, "template", None)
        if isinstance(template, StringTemplate):  # fine-tuned in a config template: saved as its chat template
            tokenizer.chat_template = template.as_jinja()
        # Full fine-tuning is written as trained, in float32 master weights, whatever model.dtype: bf16 would
        # round away what a short or low-lr run changed (3 steps at lr 5e-6 move a weight by less than
        # half its bf16 spacing). A bf16 copy for serving is one `.to(torch.bfloat16)` away.
        published = merged_model(model)
        attributes = OmegaConf.select(cfg, "data.attributes") or {}
        if attributes.get("use"):  # SteerLM: the order its attribute strings were written in, for chat.py
            template = OmegaConf.to_container(cfg.data.template, resolve=True)  # recorded too
            record_attribute_order(published.config, list(attributes.order), template)
        save_hf_folder(published, tokenizer, out / "model", state_dict=full_state)

    trained = train_module(
        cfg, out, manifest, module, datamodule, save, plan.accumulation, validate_before=cfg.stage.validate_before
    )
    throughput = trained.callbacks.get("throughput")
    metrics = {
        "before": trained.before,
        "after": trained.after,
        # after - before per split, paired on the items both validations scored (modules/val_figures.py)
        "change": validation_change(trained.before_items, trained.after_items, getattr(datamodule, "val_groups", None)),
        "global_step": trained.trainer.global_step,
        "train_tokens_per_s": throughput.mean_tokens_per_s if throughput else None,
        "train_loss": trained.train_loss,
    }
    # The final validation per item, what compare.py pairs two runs on: before the manifest's metrics, which
    # compare.py takes it with (a file beside a manifest without them is an earlier run's of the folder).
    if trained.trainer.is_global_zero:
        write_validation_items(
            out, trained.after_items, datamodule.stats.get("val_text"), getattr(datamodule, "val_groups", None)
        )
    manifest.update("metrics", metrics)
    if trained.before:
        console.print(before_after_table(trained.before, trained.after, metrics["change"], cfg.stage.name))
    if "tokenizer_report" in manifest.data["inputs"]:
        console.print(reduction_table(manifest.data["inputs"]["tokenizer_report"]))
    log.info("outputs in %s", out)
    return metrics
