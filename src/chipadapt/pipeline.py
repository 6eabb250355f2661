"""Entry points behind train.py: build everything from the config, run it, record it."""

import json
import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt import interrupts
from chipadapt.batch_plan import batch_plan, describe_plan
from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory
from chipadapt.io.checkpoints import check_checkpoint
from chipadapt.io.hashing import fingerprint_folder
from chipadapt.io.outputs import check_output_folder
from chipadapt.job import recorded_job
from chipadapt.manifest import RunManifest
from chipadapt.models.hf_folder import context_length, load_tokenizer, resolve_model_folder, save_hf_folder
from chipadapt.models.lora import merged_model
from chipadapt.quiet import silence_known_noise
from chipadapt.report import before_after_table, console
from chipadapt.scaleout.save import full_model_state
from chipadapt.tokenizer.augment import REPORT_NAME
from chipadapt.tokenizer.report import reduction_table

log = logging.getLogger(__name__)


def _final_validation(trainer: L.Trainer, module, datamodule) -> dict:
    # Fit validates at the end of its epoch; a run cut short by max_steps has not, so do it here.
    if module.last_val_step != trainer.global_step:
        trainer.validate(module, datamodule=datamodule, verbose=False)
    return module.val_results


def train(cfg: DictConfig) -> dict:
    """Run the configured stage (`stage.runner`) with a manifest that records how it ended."""
    silence_known_noise()
    out = Path(cfg.paths.output_dir)
    # Before the manifest of this attempt replaces the last one: a finished model/ is replaced only
    # with overwrite=true, a model/ that train.py did not write never, nor a folder holding model.path.
    check_output_folder(
        out / "model",
        "train",
        "hydra.run.dir",
        bool(cfg.overwrite),
        [("model.path", cfg.model.path)] if cfg.model.get("path") else [],
    )
    with recorded_job(cfg, "train", out) as manifest:  # manifest status and the W&B run end with the job
        return instantiate(cfg.stage.runner)(cfg, out, manifest)


def starting_model(cfg: DictConfig, manifest: RunManifest) -> Path:
    """The model folder a stage starts from: the configured model, through `tokenizer.adapt`."""
    folder = instantiate(cfg.tokenizer.adapt)(resolve_model_folder(cfg.model))
    report = folder / REPORT_NAME
    if report.is_file():
        manifest.update("inputs", {"tokenizer_report": json.loads(report.read_text())})
    return folder


def build_trainer(cfg: DictConfig, out: Path, accumulation: int) -> tuple[L.Trainer, dict]:
    """The Trainer of every training stage, and its callbacks by name. A group entry set to null
    (callbacks.progress=null, logger.csv=null) switches that callback or logger off."""
    callbacks = {name: instantiate(c) for name, c in cfg.callbacks.items() if c is not None}
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        accumulate_grad_batches=accumulation,
        gradient_clip_val=cfg.optim.gradient_clip_val,
        logger=[instantiate(c) for c in cfg.logger.values() if c is not None],
        callbacks=list(callbacks.values()),
        default_root_dir=str(out),
    )
    config = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:  # the whole resolved config, not only the module's hyperparameters
        logger.log_hyperparams(config)
    return trainer, callbacks


def resume_checkpoint(cfg: DictConfig, out: Path) -> str | None:
    """`DIR/checkpoints/last.ckpt` when the run folder has one and `resume` is on; a checkpoint that
    cannot be read (a crash while it was written, a damaged disk) is a one-line error."""
    ckpt = out / "checkpoints" / "last.ckpt"
    if not cfg.resume or not ckpt.exists():
        return None
    if ckpt.is_file():
        check_checkpoint(ckpt)
    return str(ckpt)


def fit(trainer: L.Trainer, module, datamodule, ckpt_path: str | None) -> None:
    """trainer.fit, with SIGINT/SIGTERM held until the optimizer step in flight completes (the
    interrupt callback then writes last.ckpt and stops)."""
    with interrupts.deferred():
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)


def run_lightning_stage(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    """DAPT (and every stage that trains a LightningModule on a DataModule)."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    folder = starting_model(cfg, manifest)
    context = context_length(folder)
    if cfg.data.seq_len > context:
        raise ChipadaptError(
            f"data.seq_len={cfg.data.seq_len} exceeds the model's context of {context} tokens ({folder}/config.json)"
        )
    plan = batch_plan(cfg.data, cfg.trainer)
    manifest.update("inputs", {"model_folder": str(folder), "model_files": fingerprint_folder(folder)})
    manifest.add_input("model", folder)
    for section in ("sources", "val_sources"):  # the data by content: a changed corpus shows as a new fingerprint
        for name, source in (cfg.data.get(section) or {}).items():
            if source and source.get("path"):
                manifest.add_input(f"data.{section}.{name}", source.path)

    tokenizer = load_tokenizer(folder)
    datamodule = instantiate(cfg.stage.datamodule)(
        data=cfg.data,
        tokenizer=tokenizer,
        separator_token=cfg.model.doc_separator,
        token_cache_dir=cfg.paths.token_cache,
        seed=cfg.seed,
    )
    # Prepared here, before the model loads, so data errors surface in seconds and the plan prints.
    datamodule.prepare_data()
    datamodule.setup("fit")
    manifest.update("data", datamodule.stats)
    console.print(datamodule.summary())

    module = instantiate(cfg.stage.module)(
        model_folder=folder,
        dtype=cfg.model.dtype,
        attn_implementation=cfg.model.attn_implementation,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        optim=cfg.optim,
        loss_guard=cfg.get("loss_guard"),
        peft=cfg.peft if cfg.get("peft") and cfg.peft.r else None,
    )
    trainer, callbacks = build_trainer(cfg, out, plan.accumulation)
    steps_per_epoch = datamodule.stats["train_sequences"] // plan.global_batch
    steps = min(trainer.max_steps, steps_per_epoch) if trainer.max_steps > 0 else steps_per_epoch
    summary = describe_plan(plan, steps, cfg.plan.tokens_per_s_per_gpu, cfg.plan.gpu)
    log.info("%s", summary)
    manifest.update("plan", {"text": summary, "steps": steps, "tokens": steps * plan.tokens_per_step})

    resume_from = resume_checkpoint(cfg, out)
    before = {}
    if resume_from:
        log.info("resuming from %s", resume_from)
    elif cfg.stage.validate_before:
        trainer.validate(module, datamodule=datamodule, verbose=False)
        before = module.val_results
        manifest.update("metrics", {"before": before})

    fit(trainer, module, datamodule, resume_from)
    after = _final_validation(trainer, module, datamodule)
    full_state = full_model_state(trainer, module)  # FSDP: gathered on rank 0
    if trainer.is_global_zero:
        if cfg.get("peft") and cfg.peft.r:
            with atomic_directory(out / "adapter", "train") as tmp:  # the adapters alone, loadable with peft
                module.model.save_pretrained(tmp)
        save_hf_folder(merged_model(module.model), tokenizer, out / "model", state_dict=full_state)

    throughput = callbacks.get("throughput")
    metrics = {
        "before": before,
        "after": after,
        "global_step": trainer.global_step,
        "train_tokens_per_s": throughput.mean_tokens_per_s if throughput else None,
        "train_loss": float(trainer.callback_metrics["train/loss"])
        if "train/loss" in trainer.callback_metrics
        else None,
    }
    manifest.update("metrics", metrics)
    if before:
        console.print(before_after_table(before, after, cfg.stage.name))
    if "tokenizer_report" in manifest.data["inputs"]:
        console.print(reduction_table(manifest.data["inputs"]["tokenizer_report"]))
    log.info("outputs in %s", out)
    return metrics
