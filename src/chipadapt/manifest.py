"""manifest.json: what a run did, from what, with which result — one schema for every entry point
(train, evaluate, merge, chat, reproduce), so compare.py and the report read any run the same way.

Rewritten atomically as it goes, so its `status` tells a finished run ("completed") from a crashed
or failed one ("running" left behind, or "failed")."""

import datetime as dt
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.command_line import launch_command
from chipadapt.io.hashing import fingerprint_file, fingerprint_folder, sha256_json, stat_signature
from chipadapt.io.launch_ranks import other_process_of_a_launch, rank_label

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
# Every manifest has exactly these keys (sections a kind of run does not use stay empty), in this order.
SECTIONS = ("inputs", "data", "plan", "metrics", "results")
# Beside manifest.json in a sweep job's folder: the last attempt refused before it recorded itself (exit 2).
# Hidden, as it is no run's record (run_folder_guard.not_a_run); a job's manifest of the same launch wins.
REFUSAL = ".refused.json"
# Set by a search around each launch of its trials (optuna_trial_outcome.launching): that launch's id, which its
# jobs' manifests and refusal records carry (`launch`), so that the search tells its launch's records from an
# earlier one's in the same folder without comparing the clocks of the hosts that wrote them. The environment
# reaches the jobs of every launcher (io/command_line.COMMAND_ENV), a requeued SLURM job's as well.
LAUNCH_ENV = "CHIPADAPT_SEARCH_LAUNCH"


def search_launch() -> dict[str, str]:
    """`{"launch": <id>}` in a job of a search's launch, for its records; {} elsewhere."""
    launch = os.environ.get(LAUNCH_ENV)
    return {"launch": launch} if launch else {}


def utc_now() -> str:
    """A record's time, aware and in UTC (`2026-12-07T10:00:00+00:00`): the same instant for every host and
    zone that reads it (a SLURM node's record read by the search host), across a DST change too."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def recorded_time(value: Any) -> dt.datetime | None:
    """A record's time, aware: as written where it names its zone; a naive one (records written before they
    were in UTC) as this host's local time, in which it was written. None where it is no time."""
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.astimezone()


def git_state(ignore: Path | Iterable[Path] = (), repo: Path | None = None) -> dict[str, Any]:
    """The commit the code (or `repo`) is at, and whether the tree differs from it; `ignore` leaves out
    folders the caller is writing itself (a report being built is no change to the code that builds it)."""
    repo = Path(repo or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        top = Path(
            subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
            ).stdout.strip()
        ).resolve()
        # git refuses a pathspec outside the work tree; a folder outside it cannot make the tree dirty anyway.
        folders = [Path(ignore)] if isinstance(ignore, (str, Path)) else [Path(f) for f in ignore]
        exclude = [
            f":(exclude,literal){folder.resolve()}" for folder in folders if folder.resolve().is_relative_to(top)
        ]
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--", ":/", *exclude],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def hydra_overrides() -> list[str]:
    """The job's own overrides (`optim.lr=1e-4`), as Hydra recorded them; [] outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


# A model folder's tokenizer, fingerprinted on its own too: runs that share a tokenizer but not weights
# (DAPT with the augmented tokenizer at different learning rates) show it.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


# Content fingerprints already taken in this process, by path and stat signature: merge.py checks its
# inputs' fingerprints against an earlier job and records them in two manifests, one read of the files.
_FINGERPRINTS: dict[tuple[str, str], dict[str, Any]] = {}


def fingerprint_input(path: str | Path) -> dict[str, Any]:
    """{path, fingerprint, files[, tokenizer_fingerprint]}: one digest for a file or a whole folder (a
    model, a corpus), so two runs on the same input show the same fingerprint whatever its name."""
    path = Path(path)
    if not path.exists():
        return _fingerprint_input(path)
    key = (str(path.resolve()), sha256_json(stat_signature(path, hidden=True)))  # any change: hashed again
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = _fingerprint_input(path)
    return dict(_FINGERPRINTS[key])


def _fingerprint_input(path: Path) -> dict[str, Any]:
    if path.is_file():
        files = {path.name: fingerprint_file(path)}
    elif path.is_dir():
        files = fingerprint_folder(path)
    else:
        return {"path": str(path), "fingerprint": None, "files": 0}
    record = {"path": str(path.resolve()), "fingerprint": sha256_json(files), "files": len(files)}
    tokenizer = {name: files[name] for name in TOKENIZER_FILES if name in files}
    if tokenizer:
        record["tokenizer_fingerprint"] = sha256_json(tokenizer)
    return record


class RunManifest:
    def __init__(self, out_dir: str | Path, cfg: DictConfig, kind: str = "train"):
        self.path = Path(out_dir) / "manifest.json"
        self._clock = time.perf_counter()
        self.data: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "kind": kind,  # train | evaluate | merge | chat | reproduce
            "status": "running",
            "command": " ".join(launch_command()),  # the user's, also in a submitit worker
            "overrides": hydra_overrides(),
            **search_launch(),
            # This attempt's own id: a refusal names the manifest it leaves beside it by it (record_refusal), as
            # two attempts' `started`, a second of the writing hosts' clocks, can be the same.
            "attempt": uuid.uuid4().hex,
            "started": utc_now(),
            "finished": None,
            "wall_s": None,
            "error": None,
            "git": git_state(),
            "config": OmegaConf.to_container(cfg, resolve=True),
            **{section: {} for section in SECTIONS},
        }
        self.write()

    def update(self, section: str, values: dict[str, Any]) -> None:
        self.data[section].update(values)
        self.write()

    def add_input(self, name: str, path: str | Path) -> dict[str, Any]:
        """Record an input file or folder by content (see `fingerprint_input`)."""
        record = fingerprint_input(path)
        self.update("inputs", {name: record})
        return record

    def finish(self, status: str, error: str | None = None) -> None:
        self.data["status"] = status
        self.data["finished"] = utc_now()
        self.data["wall_s"] = round(time.perf_counter() - self._clock, 1)
        self.data["error"] = error
        self.write()
        if status != "completed" and other_process_of_a_launch():
            # Where rank 0's record does not say it (it names its own end): this process's failure, kept beside it.
            # compare.py and reproduce read manifest.json by that name alone.
            write_json_atomic(self.path.with_name(f"manifest.rank{rank_label()}.json"), self.data)

    def write(self) -> None:
        # Rank 0 writes the run's record; another process a launcher started keeps its copy in memory: its writes
        # would replace rank 0's (its own `started`, inputs and status) in the folder they share. A lone process
        # in whose environment a cluster left a rank variable (NODE_RANK, SLURM_PROCID) writes its own.
        if not other_process_of_a_launch():
            write_json_atomic(self.path, self.data)


def record_refusal() -> None:
    """After the current sweep job refused its input (exit 2): which launch of its folder was refused (its
    overrides, when), for a search whose launcher runs jobs elsewhere (submitit) to tell it from a job
    queued still (optuna_trial_outcome.py), where a refused attempt leaves no manifest of its own (it puts
    the folder's earlier records back: run_folder_guard.restore_records_after_refusal). Only in a sweep
    job's existing folder, and from one process of a launch."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    try:
        if other_process_of_a_launch():
            return
    except ChipadaptError:  # the refusal itself (io/launch_ranks): a process above the launcher's rank 0, which
        return  # runs the job in this folder; a note there would fail the trial rank 0 runs
    hydra = HydraConfig.get()
    folder = Path(hydra.runtime.output_dir)
    if hydra.mode != RunMode.MULTIRUN or not folder.is_dir():
        return
    record = {"status": "refused", "overrides": hydra_overrides(), **search_launch(), "refused": utc_now()}
    # The manifest the refusal leaves beside it (put back by restore_records_after_refusal): its `attempt` (and
    # `started`, for a manifest of an earlier chipadapt that has no attempt id), by which the search tells that no
    # attempt recorded itself after the refusal (a requeued one did where the manifest differs), without comparing
    # the times of two hosts (optuna_trial_outcome.refused_after).
    try:
        beside = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        record["manifest_attempt"], record["manifest_started"] = beside.get("attempt"), beside.get("started")
    except FileNotFoundError:
        record["manifest_attempt"] = record["manifest_started"] = None
    except (OSError, ValueError, AttributeError):
        pass  # an unreadable manifest: the search orders the refusal by the records' times, as before
    try:
        write_json_atomic(folder / REFUSAL, record)
    except OSError as err:  # the refusal's own line and exit status matter more than the note
        log.warning("could not note the refusal in %s: %s", folder, err)
