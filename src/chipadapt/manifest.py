"""manifest.json: what a run did, from what, with which result. Rewritten atomically as it goes,
so its `status` tells a finished run ("completed") from a crashed or failed one."""

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from chipadapt.io.atomic import write_json_atomic


def git_state() -> dict[str, Any]:
    repo = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


class RunManifest:
    def __init__(self, out_dir: str | Path, cfg: DictConfig):
        self.path = Path(out_dir) / "manifest.json"
        self.data: dict[str, Any] = {
            "status": "running",
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "finished": None,
            "git": git_state(),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "inputs": {},
            "data": {},
            "metrics": {},
            "plan": {},
        }
        self.write()

    def update(self, section: str, values: dict[str, Any]) -> None:
        self.data[section].update(values)
        self.write()

    def finish(self, status: str, error: str | None = None) -> None:
        self.data["status"] = status
        self.data["finished"] = dt.datetime.now().isoformat(timespec="seconds")
        if error:
            self.data["error"] = error
        self.write()

    def write(self) -> None:
        write_json_atomic(self.path, self.data)
