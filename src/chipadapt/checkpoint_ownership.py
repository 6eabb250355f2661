"""Whether a checkpoint, and the model it started from, are the run's: the run's manifest.json is a causal-LM
training run's, its starting model is unchanged since, and the checkpoint's recorded settings and step are
the run's, not an earlier run's left in the same folder."""

import logging
from pathlib import Path

from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.io.jsonl import json_object
from chipadapt.manifest import fingerprint_input

log = logging.getLogger(__name__)

CAUSAL_LM_RUNNER = "chipadapt.stages.causal_lm.run"


def run_record(run: Path) -> dict:
    """The run's manifest.json: its resolved config and its inputs by content."""
    record = json_object(run / "manifest.json", "run")
    if record.get("kind") != "train" or not isinstance(record.get("config"), dict):
        raise ChipadaptError(f"run: {run}/manifest.json is not a training run's record")
    stage = record["config"].get("stage") or {}
    if (stage.get("runner") or {}).get("_target_") != CAUSAL_LM_RUNNER:
        raise ChipadaptError(
            f"run: {run} is a {stage.get('name', 'non-causal-LM')} run; export rebuilds causal-LM runs "
            f"(dapt, sft, steerlm) only: its model is {run}/model, written when the run ends"
        )
    return record


def starting_folder(run: Path, record: dict) -> tuple[Path, dict]:
    """The folder the run started from, refused when its content is not what the run recorded."""
    recorded = (record.get("inputs") or {}).get("model")
    if not isinstance(recorded, dict) or not recorded.get("path") or not recorded.get("fingerprint"):
        raise ChipadaptError(f"run: {run}/manifest.json records no starting model (inputs.model)")
    folder = Path(recorded["path"])
    if not folder.is_dir():
        raise ChipadaptError(
            f"run: the starting model {folder} ({run}/manifest.json inputs.model) is gone; the checkpoint needs "
            "its tokenizer and config (and, with LoRA, its weights)"
        )
    log.info("checking the starting model %s against the run's record", folder)
    current = fingerprint_input(folder)
    if current["fingerprint"] != recorded["fingerprint"]:
        raise ChipadaptError(
            f"run: the starting model {folder} changed since the run started from it (its content fingerprint "
            f"differs from {run}/manifest.json inputs.model); restore it to export this run's checkpoints"
        )
    return folder, current


def check_written_by_run(run: Path, ckpt: Path, record: dict, content: dict) -> None:
    """Refuse a checkpoint that is not this run's: one written by another run in the same folder (one an
    earlier version's start-over left there: a step of the discarded run its shorter successor did not reach),
    told by the settings it recorded (checkpoint_records.RecordSettings) against the run's manifest, and by
    a step beyond what the manifest says the run trained. Exported, its weights were named the new run's.
    What a resume may change (the length, micro-batch size, activation checkpointing) and the content of the
    data (the manifest records it by other means) are not compared; a checkpoint from before settings were
    recorded is not either."""
    from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY
    from chipadapt.stages.resume_settings import (
        CONTENT,
        WARNED,
        comparable_settings,
        ends_with,
        trajectory_settings,
    )

    step, config = content.get("global_step"), record["config"]
    trained = (record.get("metrics") or {}).get("global_step") if record.get("status") == "completed" else None
    max_steps = (config.get("trainer") or {}).get("max_steps")
    bound, said = (trained, "trained {} steps") if isinstance(trained, int) else (max_steps, "trains at most {} steps")
    # A run that resumed a checkpoint past its length (a shorter overwrite=true rerun whose attempt did not
    # complete) holds that step as its own: bounded by the step it resumed (stages/common.train_module).
    resumed = ((record.get("inputs") or {}).get("resumed") or {}).get("step")
    if not isinstance(trained, int) and isinstance(resumed, int) and isinstance(bound, int) and 0 <= bound < resumed:
        bound, said = resumed, "resumed at step {} and trains no further"
    if isinstance(bound, int) and bound >= 0 and isinstance(step, int) and step > bound:
        raise ChipadaptError(
            f"checkpoint: {ckpt} holds step {step}, but {run}/manifest.json says this run {said.format(bound)}: "
            "it is an earlier run's checkpoint in this folder, not this run's weights"
        )
    recorded = content.get(CHECKPOINT_KEY)
    if not isinstance(recorded, dict):
        return
    # Read as the resume check reads them: what resumes after a version change is this run's.
    recorded, current = comparable_settings(recorded, trajectory_settings(OmegaConf.create(config), contents=False))
    changed = sorted(
        key
        for key in recorded.keys() | current.keys()
        if not key.endswith(CONTENT) and not ends_with(key, WARNED) and recorded.get(key) != current.get(key)
    )
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        first = changed[0]
        raise ChipadaptError(
            f"checkpoint: {ckpt} was written by a run with other settings than {run}/manifest.json records "
            f"({first}: {recorded.get(first)!r} there, {current.get(first)!r} in the manifest{more}): an earlier "
            "run's checkpoint in this folder, not this run's weights"
        )
