"""`stage=annotate`, SteerLM step 2: label every conversation of `annotate.input` with the attribute
model's predictions (no training) -> DIR/annotated.jsonl (or `annotate.output`)."""

import json
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt.data.conversations import read_conversations
from chipadapt.io.atomic import write_text_atomic
from chipadapt.io.outputs import check_output_file, first_line
from chipadapt.manifest import RunManifest
from chipadapt.stages.common import begin
from chipadapt.steerlm.rating import AttributeRater

log = logging.getLogger(__name__)


def _annotated_by_us(path: Path) -> bool:
    """An earlier output of this stage: its records carry `human_attributes`, which no input format has."""
    try:
        return "human_attributes" in json.loads(first_line(path) or "{}")
    except ValueError:
        return False


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    begin(cfg)
    a = cfg.annotate
    target = out / "annotated.jsonl"
    if a.output:  # a user-named file: checked before the attribute model rates anything
        source = a.input.get("path") if isinstance(a.input, DictConfig) else None
        inputs = [("annotate.input.path", source), ("annotate.attribute_model", a.attribute_model)]
        target = check_output_file(a.output, "annotate.output", _annotated_by_us, inputs)
    rater = AttributeRater(a.attribute_model, instantiate(cfg.data.template), a.max_tokens, a.batch_size)
    convs = read_conversations("annotate.input", OmegaConf.to_container(a.input, resolve=True))[: a.limit]
    predicted = rater.rate([c.messages for c in convs])
    lines = [
        json.dumps({"id": c.id, "messages": c.messages, "attributes": p, "human_attributes": c.attributes or None})
        for c, p in zip(convs, predicted)
    ]
    write_text_atomic(target, "\n".join(lines) + "\n")
    means = {k: sum(p[k] for p in predicted) / len(predicted) for k in rater.attributes}
    manifest.update("metrics", {"annotated": len(convs), "mean_attributes": means, "output": str(target)})
    log.info("annotated %d conversations -> %s (means %s)", len(convs), target, means)
    return {"annotated": len(convs), "output": str(target)}
