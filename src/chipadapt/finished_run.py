"""What a rerun of a train command needs to know first: whether its folder holds this very run, completed."""

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
