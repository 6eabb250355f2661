"""What a rerun of a train command needs to know first: whether its folder holds this very run, completed,
and where it holds another one, what the user changed since (said beside the refusal to replace it)."""

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def completed_record(cfg: DictConfig, out: Path) -> dict | None:
    """The manifest of a completed train run in `out` with this very resolved config and its model/ in
    place; None otherwise, and always with overwrite=true. The caller then compares the inputs."""
    path = out / "manifest.json"
    if cfg.overwrite or not path.is_file() or not (out / "model").is_dir():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if recorded.get("kind") != "train" or recorded.get("status") != "completed":
        return None
    if recorded.get("config") != OmegaConf.to_container(cfg, resolve=True):
        return None
    return recorded


# Changes named in a refusal; more are counted ("and 3 more").
NAMED_CHANGES = 5


def _recorded(out: Path) -> dict | None:
    try:
        recorded = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) and recorded.get("kind") == "train" else None


def what_changed(cfg: DictConfig, out: Path) -> str:
    """Why `out`'s model/ is not this run's, for the refusal to replace it: `, completed before with
    other settings: optim.lr: 5e-05 -> 0.0001` (the resolved configs compared key by key, as a resume
    names its changes), `, completed before with these settings but other inputs` (a data file or the
    model changed in place), or the earlier run's status where it did not complete; "" where the folder
    records no train run. The user who reran with another learning rate then knows what the refusal is
    about, and that a new hydra.run.dir keeps both runs."""
    recorded = _recorded(out)
    if recorded is None:
        return ""
    if recorded.get("status") != "completed":
        return f" (its run's status: {recorded.get('status')})"
    from chipadapt.stages.resume_settings import describe, flatten

    before = dict(flatten(recorded.get("config") or {}))
    now = dict(flatten(OmegaConf.to_container(cfg, resolve=True)))
    keys = [key for key in dict.fromkeys([*before, *now]) if key != "overwrite" and before.get(key) != now.get(key)]
    if not keys:
        return ", completed before with these settings but other inputs (a data source or the model changed since)"
    changes = describe(keys, before, now)
    more = f" and {len(changes) - NAMED_CHANGES} more" if len(changes) > NAMED_CHANGES else ""
    return f", completed before with other settings: {'; '.join(changes[:NAMED_CHANGES])}{more}"
