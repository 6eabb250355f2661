"""Evaluation tasks finished in an earlier run of the same folder, kept rather than run again.

A run of several tasks (IFEval, MMLU, the EDA scripts, VerilogEval) takes hours on a CPU and can be
preempted on a cluster. As each task completes, its results are written to `<run>/tasks/<task>.json`
with a key: the task's resolved settings, the model's content fingerprint and how it is loaded
(dtype, attention, device). A rerun in the same `hydra.run.dir` keeps every task whose key matches
and whose per-item file is still there, and runs the others; changing a task's settings (a larger
`limit`) or the model runs that task again. `resume=false` runs everything again.
"""

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.hashing import sha256_json
from chipadapt.io.jsonl import json_object

log = logging.getLogger(__name__)


class FinishedTasks:
    def __init__(self, run_folder: Path, loading: dict[str, Any]):
        self.run_folder = Path(run_folder)
        self.folder = self.run_folder / "tasks"
        self.loading = loading  # dtype, attention, device: how the model is run changes its answers

    def key(self, task_cfg: DictConfig, model_fingerprint: str | None) -> str:
        settings = OmegaConf.to_container(task_cfg, resolve=True)
        return sha256_json(
            {"task": settings, "model": model_fingerprint, **(self.loading if model_fingerprint else {})}
        )

    def load(self, name: str, key: str) -> dict | None:
        path = self.folder / f"{name}.json"
        if not path.is_file():
            return None
        try:
            record = json_object(path)
        except (ChipadaptError, OSError) as err:  # our own record, written atomically: damaged only by hand
            log.warning("%s: %s; running it again", name, err)
            return None
        if record.get("key") != key or "results" not in record:
            log.info("%s: finished earlier with other settings or another model; running it again", name)
            return None
        if record.get("items") and not (self.run_folder / f"{name}_items.jsonl").is_file():
            log.info("%s: its per-item records are gone; running it again", name)
            return None
        log.info("%s: finished in an earlier run of this folder, results kept (resume=false runs it again)", name)
        return record["results"]

    def save(self, name: str, key: str, results: dict, items: bool) -> None:
        """After the task's per-item file is written: the record marks the task complete."""
        write_json_atomic(self.folder / f"{name}.json", {"key": key, "items": items, "results": results})
