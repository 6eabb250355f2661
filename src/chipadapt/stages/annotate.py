"""`stage=annotate`, SteerLM step 2: label every conversation of `annotate.input` with the attribute
model's predictions (no training) -> DIR/annotated.jsonl (or `annotate.output`). An attribute whose head
had no training label is written as null (steerlm/attribute_record.py), which SteerLM reads as unlabelled.

eval=eda_script's evaluation scripts stay out of what SteerLM trains on, the hash split that
data.sources.eda_scripts applies: for the EDA-Corpus files (`annotate.eda_eval_split.corpus`) only. A
split defined over EDA scripts means nothing for a file of the user's own, where it would drop a fifth of
it at random; an explicit `annotate.input.exclude_eval_split` applies it to any file. What it leaves out
is counted and told either way."""

import json
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt.data.conversations import Conversation, read_conversations
from chipadapt.io.atomic import write_text_atomic
from chipadapt.io.outputs import check_output_file, first_line
from chipadapt.manifest import RunManifest, fingerprint_input
from chipadapt.run_folder_key import run_folder_key
from chipadapt.stages.common import begin
from chipadapt.stages.output_rerun import finished_or_refused
from chipadapt.steerlm.progress_journal import drop_when_completed, progress_journal
from chipadapt.steerlm.rating import AttributeRater
from chipadapt.steerlm.rating_intervals import mean_with_interval, shown

log = logging.getLogger(__name__)

KEY = "annotate.input"


def _annotated_by_us(path: Path) -> bool:
    """An earlier output of this stage: its records carry `human_attributes`, which no input format has."""
    try:
        return "human_attributes" in json.loads(first_line(path) or "{}")
    except ValueError:
        return False


def output_file(cfg: DictConfig, out: Path) -> tuple[Path, str]:
    """Where the annotated conversations go, and the setting that says so."""
    if cfg.annotate.output:
        return Path(str(cfg.annotate.output)).expanduser().resolve(), "annotate.output"
    return out / "annotated.jsonl", run_folder_key()


def finished_before(cfg: DictConfig, out: Path) -> dict | None:
    """train.py's hook: a rerun of this completed annotation is passed, one with other settings or
    inputs refused unless overwrite=true (stages/output_rerun.py)."""
    target, key = output_file(cfg, out)
    done = finished_or_refused(cfg, out, target, key)
    if done is not None:
        drop_when_completed(out, "annotate")  # its ratings are in the published file now
    return done


def input_spec(a: DictConfig) -> tuple[dict, str | None]:
    """`annotate.input` as a source, with the EDA evaluation split where the input is an EDA-Corpus file;
    and how to keep the rows the split leaves out, where one applies."""
    spec = OmegaConf.to_container(a.input, resolve=True)
    if spec.get("exclude_eval_split") == {"fraction": None}:  # null, as eval.eda_script.eval_fraction=null: no split
        return {**spec, "exclude_eval_split": None}, None
    if spec.get("exclude_eval_split") is not None:
        return spec, f"without {KEY}.exclude_eval_split they are kept"
    split = a.get("eda_eval_split")
    # fraction null: eval.eda_script.eval_fraction=null scores a file of the user's own whole, no EDA split
    if split and split.get("fraction") is not None and spec.get("path"):
        corpus = Path(str(split.corpus)).expanduser().resolve()
        source = Path(str(spec["path"])).expanduser().resolve()
        if source == corpus or corpus in source.parents:
            spec["exclude_eval_split"] = {"fraction": float(split.fraction)}
            return spec, "annotate.eda_eval_split=null keeps them"
    return spec, None


def read_input(spec: dict, switch_off: str | None) -> tuple[list[Conversation], int]:
    """The conversations to annotate, and how many rows the evaluation split left out."""
    convs = read_conversations(KEY, spec)
    if switch_off is None or spec.get("format", "chat") == "chat":
        return convs, 0  # the split applies to prompt/completion rows only (data/conversations.py)
    whole = read_conversations(KEY, {k: v for k, v in spec.items() if k != "exclude_eval_split"})
    left_out = len(whole) - len(convs)
    log.info(  # what the user or the default asked for; told with its count, and how to keep them
        "%s: left out %d of %d rows, the scripts eval=eda_script scores (its hash split, fraction %g); %s",
        KEY,
        left_out,
        len(whole),
        spec["exclude_eval_split"]["fraction"],
        switch_off,
    )
    return convs, left_out


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    begin(cfg)
    a = cfg.annotate
    target, _ = output_file(cfg, out)
    spec, switch_off = input_spec(a)
    if a.output:  # a user-named file: checked before the attribute model rates anything
        inputs = [("annotate.input.path", spec.get("path")), ("annotate.attribute_model", a.attribute_model)]
        target = check_output_file(a.output, "annotate.output", _annotated_by_us, inputs)
    rater = AttributeRater(a.attribute_model, instantiate(cfg.data.template), a.max_tokens, a.batch_size)
    manifest.add_input("annotate.attribute_model", rater.folder)
    if Path(str(spec["path"])).expanduser().exists():  # a local file or folder, not a dataset on the hub
        manifest.add_input(KEY, Path(str(spec["path"])).expanduser())
    convs, left_out = read_input(spec, switch_off)
    convs = convs[: a.limit]  # a.limit: null or >= 1 (steerlm/stage_settings.py)
    # Every rating is kept as it completes, for a rerun after an interruption (steerlm/progress_journal.py).
    journal = progress_journal(cfg, out, "annotate", {"attribute_model": rater.folder})
    predicted = rater.rate([c.messages for c in convs], journal)
    lines = [
        json.dumps({"id": c.id, "messages": c.messages, "attributes": p, "human_attributes": c.attributes or None})
        for c, p in zip(convs, predicted)
    ]
    write_text_atomic(target, "\n".join(lines) + "\n")
    journal.close()  # kept until the manifest says completed: removed on the rerun that passes this as done
    # With their 95% intervals over the conversations (steerlm/rating_intervals.py).
    figures = {
        k: mean_with_interval([p[k] for p in predicted], "conversation") if k in rater.rated else None
        for k in rater.attributes
    }
    means = {k: f["mean"] if f else None for k, f in figures.items()}
    metrics = {
        "annotated": len(convs),
        "left_out_eval_split": left_out,
        "unrated": rater.unrated,  # heads without a training label: null in every record
        "mean_attributes": means,
        "mean_attributes_ci": {k: f["ci"] if f else None for k, f in figures.items()},
        "mean_attributes_ci_method": {k: f["ci_method"] if f else None for k, f in figures.items()},
        "output": str(target),
    }
    manifest.update("metrics", metrics)
    manifest.update("results", {"output": fingerprint_input(target)})
    shown_means = ", ".join(f"{k} {shown(f)}" for k, f in figures.items())
    log.info("annotated %d conversations -> %s (mean ratings, 95%% intervals: %s)", len(convs), target, shown_means)
    return metrics
