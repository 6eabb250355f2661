"""A rerun of a stage that writes one file (stage=annotate's annotated.jsonl, stage=bootstrap's
bootstrap.jsonl) where that file is already: the rule of the training stages' `model/`. The same
settings (the resolved config), the same inputs by content (every input the manifest recorded) and the
file as that completed run wrote it: passed, its metrics returned, nothing redone (a sweep rerun after an
interruption goes on with the jobs that did not finish), and the same settings after a run that failed or
was stopped run again. Anything else replaces the file only with overwrite=true; without it the rerun
is refused, as train.py's is, before it writes anything, its manifest included. Called from each
stage's `finished_before` hook (pipeline.train).

A completed run of an earlier version recorded no fingerprint of its file (`results.output`): refused
as that, not adopted, even with the same command. Nothing tells that the file is still what it wrote,
and what it wrote is not what this version writes for the same settings (annotate rated heads that no
label trained and kept the scripts eval=eda_script scores; bootstrap scored those heads)."""

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.manifest import fingerprint_input
from chipadapt.run_settings import unread_sections, without_unread
from chipadapt.stages.resume_settings import SHOWN, describe, flatten


def _manifest(out: Path) -> dict | None:
    try:
        recorded = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) and recorded.get("kind") == "train" else None


def _changed_inputs(recorded: dict) -> list[str]:
    """The recorded inputs ({path, fingerprint} entries) whose content is not what the run read."""
    return [
        key
        for key, entry in (recorded.get("inputs") or {}).items()
        if isinstance(entry, dict)
        and {"path", "fingerprint"} <= entry.keys()
        and fingerprint_input(entry["path"])["fingerprint"] != entry["fingerprint"]
    ]


# `overwrite` says what may be replaced, not what is made. Nor do the sections the stage never reads
# (run_settings.unread_sections): `eval`, in stage=annotate's config only for annotate.eda_eval_split.fraction
# to resolve from (the resolved config holds that value there), and annotate's `tokenizer` (the attribute model
# keeps its own; a folder made with tokenizer=augmented, refused since, would have no command that passes it).
NOT_SETTINGS = ("overwrite",)


def _settings(config) -> dict:
    """The resolved config, as dotted keys, without what does not change the file written: run_settings'
    one table of what the stage never reads (whole sections, and the parts of `data` annotate and
    bootstrap do not read), the table stage_reads.py refuses overrides by."""
    config = config or {}
    stage = (config.get("stage") or {}).get("name")
    skipped = {*NOT_SETTINGS, *unread_sections(stage)}
    kept = {key: value for key, value in config.items() if key not in skipped}
    return without_unread(dict(flatten(kept)), stage)


def _other_settings(recorded: dict, config: dict) -> str:
    before, now = _settings(recorded.get("config")), config
    keys = sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))
    shown = describe(keys[:SHOWN], before, now)
    return "; ".join(shown) + (f"; and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def finished_or_refused(cfg: DictConfig, out: Path, target: Path, key: str) -> dict | None:
    """The completed run's metrics when this rerun would redo it; None when the stage is to run (no file
    at `target` yet, or overwrite=true); else a ChipadaptError naming what differs. `key`: the setting
    that names where the file goes (`hydra.run.dir`, `annotate.output`)."""
    if not target.exists():
        return None
    recorded = _manifest(out)
    config = _settings(OmegaConf.to_container(cfg, resolve=True))
    completed = recorded is not None and recorded.get("status") == "completed"
    output = ((recorded or {}).get("results") or {}).get("output") or {}
    earlier_version = completed and not output  # this version records the output as it completes
    same_file = completed and output.get("fingerprint") == fingerprint_input(target)["fingerprint"]
    same_config = recorded is not None and _settings(recorded.get("config")) == config
    if not cfg.overwrite and same_file and same_config and not _changed_inputs(recorded):
        return recorded.get("metrics") or {}
    if cfg.overwrite or (same_config and not completed):  # the same command after it failed or was stopped
        return None
    stage = cfg.stage.name
    if earlier_version:
        why = f"written by a completed {stage} run of an earlier chipadapt version, which recorded no fingerprint of it"
    elif completed and not same_file and output.get("path") == str(target.resolve()):
        why = "changed since the completed run in this folder wrote it"
    elif not same_file:
        why = "not as a completed run in this folder wrote it (a run that failed or was stopped, or another run's)"
    elif not same_config:
        why = f"written by a completed {stage} run with other settings ({_other_settings(recorded, config)})"
    else:
        why = f"written by a completed {stage} run whose inputs changed since ({', '.join(_changed_inputs(recorded))})"
    place = "folder" if key.startswith("hydra") else "file"
    raise ChipadaptError(f"{key}: {target} exists, {why}; overwrite=true replaces it, or choose another {place}")
