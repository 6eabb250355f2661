"""`stage=bootstrap`, SteerLM step 4, one round: sample replies under several attribute settings,
rate them with the attribute model, keep the best-rated reply per prompt -> DIR/bootstrap.jsonl
(train on it with stage=steerlm)."""

import json
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt.data.conversations import read_conversations
from chipadapt.io.atomic import write_text_atomic
from chipadapt.manifest import RunManifest
from chipadapt.models.inference import load_for_inference
from chipadapt.stages.common import begin, starting_model
from chipadapt.steerlm.generate import sample_with_attributes
from chipadapt.steerlm.rating import AttributeRater

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    """One SteerLM bootstrapping round: sample responses under several attribute settings, rate them
    with the attribute model, keep the best-rated response per prompt as new training data."""
    begin(cfg)
    b = cfg.bootstrap
    folder = starting_model(cfg, manifest)
    loaded = load_for_inference(folder, cfg.model.dtype, cfg.model.attn_implementation)
    model, tokenizer = loaded.model, loaded.tokenizer
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
