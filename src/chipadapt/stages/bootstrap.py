"""`stage=bootstrap`, SteerLM step 4, one round: sample replies under several attribute settings,
rate them with the attribute model, keep the best-rated reply per prompt -> DIR/bootstrap.jsonl
(train on it with stage=steerlm). An attribute the attribute model had no training label for is rated
null and left out of the score (steerlm/attribute_record.py)."""

import json
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt.data.conversations import read_conversations
from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_text_atomic
from chipadapt.manifest import RunManifest, fingerprint_input
from chipadapt.models.inference import load_for_inference
from chipadapt.run_folder_key import run_folder_key
from chipadapt.stages.common import begin, starting_model
from chipadapt.stages.output_rerun import finished_or_refused
from chipadapt.steerlm.attribute_record import ORDER_KEY, recorded_attribute_order
from chipadapt.steerlm.generate import sample_with_attributes
from chipadapt.steerlm.progress_journal import drop_when_completed, progress_journal
from chipadapt.steerlm.rating import AttributeRater
from chipadapt.steerlm.setting_figures import by_setting
from chipadapt.steerlm.stage_settings import check_attribute_setting
from chipadapt.steerlm.steering_template import named_on_command_line, steering_template

log = logging.getLogger(__name__)

OUTPUT = "bootstrap.jsonl"


def finished_before(cfg: DictConfig, out: Path) -> dict | None:
    """train.py's hook: a rerun of this completed round is passed, one with other settings or inputs
    refused unless overwrite=true (stages/output_rerun.py)."""
    done = finished_or_refused(cfg, out, out / OUTPUT, run_folder_key())
    if done is not None:
        drop_when_completed(out, "bootstrap")  # its samples and ratings are in the published file now
    return done


def steering_order(cfg: DictConfig, folder: Path) -> list[str]:
    """The order the attribute strings are written in: the one the SteerLM model records it was trained
    with, else data.attributes.order."""
    configured = list(cfg.data.attributes.order)
    recorded = recorded_attribute_order(folder)
    if recorded is None:
        return configured
    if recorded != configured:
        log.warning(
            "data.attributes.order (%s) is not the order %s/config.json records its training used (%s "
            "%s): the model's is used",
            ", ".join(configured),
            folder,
            ORDER_KEY,
            ", ".join(recorded),
        )
    return recorded


def score_weights(b: DictConfig, rater: AttributeRater) -> dict[str, float]:
    """`bootstrap.score_weights` over the attributes the attribute model rates. A weight on another one
    (a misspelt name, an attribute the model has no head or no training label for) scores nothing: told,
    and an error when no weight is left."""
    weights = {str(k): float(v) for k, v in b.score_weights.items()}
    unknown = [name for name in weights if name not in rater.attributes]
    unrated = [name for name in weights if name in rater.unrated]
    if unknown or unrated:
        log.warning(
            "bootstrap.score_weights: %s left out of the score (the attribute model %s rates %s)",
            ", ".join(unknown + unrated),
            rater.folder,
            ", ".join(rater.rated),
        )
    weights = {name: w for name, w in weights.items() if name in rater.rated}
    if not any(weights.values()):
        raise ChipadaptError(
            f"bootstrap.score_weights: no weight on an attribute the attribute model rates ({', '.join(rater.rated)})"
        )
    return weights


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    """One SteerLM bootstrapping round: sample responses under several attribute settings, rate them
    with the attribute model, keep the best-rated response per prompt as new training data."""
    begin(cfg)
    b = cfg.bootstrap
    folder = starting_model(cfg, manifest)
    order = steering_order(cfg, folder)
    settings = [OmegaConf.to_container(s, resolve=True) for s in b.attribute_settings]
    # Again against this folder's order: config_schema checked model.path's, and this may be model.source's.
    for i, setting in enumerate(settings):
        check_attribute_setting(f"bootstrap.attribute_settings[{i}]", setting, order)
    # Before the generator loads: a wrong attribute model or weight stops in seconds.
    rater = AttributeRater(b.attribute_model, instantiate(cfg.data.template), b.max_tokens, b.batch_size)
    weights = score_weights(b, rater)
    manifest.add_input("bootstrap.attribute_model", rater.folder)
    prompts_spec = OmegaConf.to_container(b.prompts, resolve=True)
    if Path(str(prompts_spec["path"])).expanduser().exists():  # a local file or folder, not a dataset on the hub
        manifest.add_input("bootstrap.prompts", Path(str(prompts_spec["path"])).expanduser())
    convs = read_conversations("bootstrap.prompts", prompts_spec)[: b.limit]  # limit: null or >= 1
    prompts = [c.messages[: max(i for i, m in enumerate(c.messages) if m["role"] == "assistant")] for c in convs]
    loaded = load_for_inference(folder, cfg.model.dtype, cfg.model.attn_implementation)
    model, tokenizer = loaded.model, loaded.tokenizer
    configured = OmegaConf.to_container(cfg.data.template, resolve=True)
    # The SteerLM model's own template (steerlm/steering_template.py); data.template still rates.
    steering = steering_template(configured, folder, "data.template", named_on_command_line("data/template"), False)
    template = instantiate(steering)(tokenizer=tokenizer)
    # Every reply and rating is kept as it completes, for a rerun after an interruption.
    journal = progress_journal(cfg, out, "bootstrap", {"model": folder, "attribute_model": rater.folder})
    candidates, fitting = sample_with_attributes(
        model,
        tokenizer,
        template,
        prompts,
        settings,
        order,
        b.samples_per_setting,
        b.max_new_tokens,
        b.temperature,
        b.batch_size,
        journal,
    )
    if fitting["system_too_long"]:
        log.warning(
            "bootstrap.prompts: the system prompt of %d prompt(s) is longer than the model's context leaves a "
            "prompt with bootstrap.max_new_tokens=%d: shorten that system turn (or lower bootstrap.max_new_tokens)",
            fitting["system_too_long"],
            b.max_new_tokens,
        )
    if prompts and fitting["prompts_too_long"] == len(prompts):
        raise ChipadaptError(
            f"bootstrap.prompts: none of the {len(prompts)} prompts leaves the model's context room for a reply with "
            f"bootstrap.max_new_tokens={b.max_new_tokens}"
            + (f" ({fitting['system_too_long']} by their system prompt alone)" if fitting["system_too_long"] else "")
            + ": nothing to sample; shorten the prompts or lower bootstrap.max_new_tokens"
        )
    if fitting["prompts_cut"] or fitting["prompts_too_long"]:
        log.warning(
            "bootstrap.prompts: %d of %d prompts left their earliest turns out to fit the model's context with "
            "bootstrap.max_new_tokens=%d; %d had no room for a reply at all and were not sampled",
            fitting["prompts_cut"],
            len(prompts),
            b.max_new_tokens,
            fitting["prompts_too_long"],
        )
    flat = [(pi, reply) for pi, replies in enumerate(candidates) for reply in replies]
    ratings = rater.rate([prompts[pi] + [{"role": "assistant", "content": reply}] for pi, reply in flat], journal)
    # Which setting each reply was sampled under (replies of a prompt are setting-major): the mean
    # rating per setting shows whether the model follows its attributes at all.
    setting_of = [j // b.samples_per_setting for replies in candidates for j in range(len(replies))]
    figures = by_setting(
        settings, ratings, setting_of, [pi for pi, _ in flat], len(prompts), rater.attributes, rater.rated
    )
    best: dict[int, tuple[float, str, dict]] = {}
    for (pi, reply), rating in zip(flat, ratings):
        score = sum(w * rating[k] for k, w in weights.items())
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
    target = out / OUTPUT
    write_text_atomic(target, "\n".join(lines) + ("\n" if lines else ""))
    journal.close()  # kept until the manifest says completed: removed on the rerun that passes this as done
    metrics = {
        "prompts": len(prompts),
        **fitting,  # prompts cut to the model's context, and those with no room for a reply
        "candidates": len(flat),
        "kept": len(lines),
        "mean_kept_score": sum(s for s, _, _ in best.values()) / max(len(best), 1),
        "unrated": rater.unrated,  # heads without a training label: null in every record, not scored
        "output": str(target),
        "by_setting": figures,
    }
    manifest.update("metrics", metrics)
    manifest.update("results", {"output": fingerprint_input(target)})
    log.info("bootstrap round: %s", {k: v for k, v in metrics.items() if k != "by_setting"})
    for entry in figures:  # with their 95% intervals over the prompts (steerlm/rating_intervals.py)
        shown_ratings = {
            a: "none" if m is None else "{:.3f} [{:.3f}, {:.3f}]".format(m, *entry["mean_rating_ci"][a])
            for a, m in entry["mean_rating"].items()
        }
        log.info("setting %s: mean ratings %s", entry["setting"], shown_ratings)
    return metrics
