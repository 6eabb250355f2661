"""SteerLM stages behind train.py: `stage=attribute_model`, `stage=annotate`, `stage=bootstrap`.
(`stage=steerlm`, the attribute-conditioned SFT, is `stage=sft` with attributes in the data.)"""

import json
import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from chipadapt.batch_plan import batch_plan
from chipadapt.data.conversations import read_conversations
from chipadapt.io.atomic import write_text_atomic
from chipadapt.manifest import RunManifest
from chipadapt.models.hf_folder import load_tokenizer, save_hf_folder
from chipadapt.modules.attribute_model import AttributeModule
from chipadapt.pipeline import build_trainer, fit, resume_checkpoint, starting_model
from chipadapt.quiet import silence_known_noise
from chipadapt.report import console
from chipadapt.steerlm.attribute_data import AttributeDataModule
from chipadapt.steerlm.rating import AttributeRater

log = logging.getLogger(__name__)


def run_attribute_model(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    silence_known_noise()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    folder = starting_model(cfg, manifest)
    tokenizer = load_tokenizer(folder)
    datamodule = AttributeDataModule(cfg.data, tokenizer, cfg.seed)
    datamodule.setup("fit")
    manifest.update("data", datamodule.stats)
    module = AttributeModule(folder, datamodule.attributes, datamodule.pad_id, cfg.optim, datamodule.label_means)
    trainer, _ = build_trainer(cfg, out, batch_plan(cfg.data, cfg.trainer).accumulation)
    fit(trainer, module, datamodule, resume_checkpoint(cfg, out))
    if module.last_val_step != trainer.global_step:  # fit cut short by max_steps has not validated at the end
        trainer.validate(module, datamodule=datamodule, verbose=False)
    save_hf_folder(module.model, tokenizer, out / "model")
    table = Table(title="Attribute model on held-out conversations (baseline: each attribute's training mean)")
    for column in ("attribute", "n", "MAE", "baseline MAE", "Spearman"):
        table.add_column(column, justify="left" if column == "attribute" else "right")
    for name, m in module.val_results.items():
        table.add_row(name, str(m["n"]), f"{m['mae']:.3f}", f"{m['baseline_mae']:.3f}", f"{m['spearman']:+.3f}")
    console.print(table)
    metrics = {"val": module.val_results, "global_step": trainer.global_step}
    manifest.update("metrics", metrics)
    return metrics


def run_annotate(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    """Label every conversation of `annotate.input` with the attribute model's predictions."""
    silence_known_noise()
    a = cfg.annotate
    rater = AttributeRater(a.attribute_model, instantiate(cfg.data.template), a.max_tokens, a.batch_size)
    convs = read_conversations("annotate.input", OmegaConf.to_container(a.input, resolve=True))[: a.limit]
    predicted = rater.rate([c.messages for c in convs])
    lines = [
        json.dumps({"id": c.id, "messages": c.messages, "attributes": p, "human_attributes": c.attributes or None})
        for c, p in zip(convs, predicted)
    ]
    target = Path(a.output) if a.output else out / "annotated.jsonl"
    write_text_atomic(target, "\n".join(lines) + "\n")
    means = {k: sum(p[k] for p in predicted) / len(predicted) for k in rater.attributes}
    manifest.update("metrics", {"annotated": len(convs), "mean_attributes": means, "output": str(target)})
    log.info("annotated %d conversations -> %s (means %s)", len(convs), target, means)
    return {"annotated": len(convs), "output": str(target)}


def run_bootstrap(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    """One SteerLM bootstrapping round: sample responses under several attribute settings, rate them
    with the attribute model, keep the best-rated response per prompt as new training data."""
    from chipadapt.steerlm.generate import sample_with_attributes

    silence_known_noise()
    b = cfg.bootstrap
    folder = starting_model(cfg, manifest)
    from chipadapt.models.hf_folder import load_causal_lm

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_causal_lm(folder, "bfloat16" if device == "cuda" else "float32", "sdpa").to(device).eval()
    tokenizer = load_tokenizer(folder)
    template = instantiate(cfg.data.template)(tokenizer=tokenizer)
    convs = read_conversations("bootstrap.prompts", OmegaConf.to_container(b.prompts, resolve=True))[: b.limit]
    prompts = [c.messages[: max(i for i, m in enumerate(c.messages) if m["role"] == "assistant")] for c in convs]
    settings = [OmegaConf.to_container(s) for s in b.attribute_settings]
    candidates = sample_with_attributes(
        model,
        tokenizer,
        template,
        prompts,
        settings,
        list(cfg.data.attributes.order),
        b.samples_per_setting,
        b.max_new_tokens,
        b.temperature,
        b.batch_size,
    )
    rater = AttributeRater(b.attribute_model, instantiate(cfg.data.template), b.max_tokens, b.batch_size)
    flat = [(pi, reply) for pi, replies in enumerate(candidates) for reply in replies]
    ratings = rater.rate([prompts[pi] + [{"role": "assistant", "content": reply}] for pi, reply in flat])
    # Which setting each reply was sampled under (replies of a prompt are setting-major): the mean
    # rating per setting shows whether the model follows its attributes at all.
    setting_of = [j // b.samples_per_setting for replies in candidates for j in range(len(replies))]
    by_setting = []
    for si, setting in enumerate(settings):
        rated = [r for r, s in zip(ratings, setting_of) if s == si]
        by_setting.append(
            {
                "setting": setting,
                "replies": len(rated),
                "mean_rating": {k: sum(r[k] for r in rated) / max(len(rated), 1) for k in rater.attributes},
            }
        )
    best: dict[int, tuple[float, str, dict]] = {}
    for (pi, reply), rating in zip(flat, ratings):
        score = sum(float(b.score_weights.get(k, 0.0)) * v for k, v in rating.items())
        if reply.strip() and (pi not in best or score > best[pi][0]):
            best[pi] = (score, reply, rating)
    lines = [
        json.dumps(
            {
                "id": f"boot{pi}",
                "messages": prompts[pi] + [{"role": "assistant", "content": reply}],
                "attributes": rating,
                "score": score,
            }
        )
        for pi, (score, reply, rating) in sorted(best.items())
    ]
    target = out / "bootstrap.jsonl"
    write_text_atomic(target, "\n".join(lines) + ("\n" if lines else ""))
    metrics = {
        "prompts": len(prompts),
        "candidates": len(flat),
        "kept": len(lines),
        "mean_kept_score": sum(s for s, _, _ in best.values()) / max(len(best), 1),
        "output": str(target),
        "by_setting": by_setting,
    }
    manifest.update("metrics", metrics)
    log.info("bootstrap round: %s", metrics)
    return metrics
