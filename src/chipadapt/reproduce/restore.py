"""Start a reproduction folder from a report's `runs/` records, on a machine that never had the run.

A report keeps each step's records (manifest, results, per-item files, overrides, the ledger and its
models' fingerprints; report/archive.py) with paths written `$CHIPADAPT_CACHE/...`. Restoring puts
them back under `out` with this machine's paths, so the ledger counts those steps as done; the models
they left out are retrained only when a step still to run needs them (rebuild.py). A run too
long for one machine's lifetime then resumes anywhere the repository goes.
"""

import json
import logging
import os
import shutil
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_file, write_json_atomic
from chipadapt.io.cache_root import cache_root
from chipadapt.reproduce.step_process import ROOT

log = logging.getLogger(__name__)


def local_paths(out: Path):
    """The inverse of io/portable_paths.py for what a resumed run compares: the cache and the run folder.
    Both as this machine's config names them, not resolved: the runner's commands name `out` as given,
    and a cache behind a symlink must not make every restored command differ from the one it would run."""
    cache, out = os.path.abspath(cache_root()), os.path.abspath(out)

    def rewrite(text: str) -> str:
        return text.replace("$CHIPADAPT_CACHE", cache).replace("$REPRODUCE_OUT", out)

    return rewrite


def restore(records: Path, out: Path) -> int:
    """Copy the records into `out` (never over a file there); the number of files copied. A folder with
    its own ledger is left as it is: its run is this machine's, and newer."""
    if not (records / "steps.json").is_file():
        raise ChipadaptError(f"resume_from: {records} holds no steps.json (a report's runs/ folder has one)")
    out = Path(os.path.abspath(out))
    if out.resolve().is_relative_to(ROOT.resolve()):
        # Records name a run folder inside the repository by a relative path, which cannot be told
        # apart from the repository's own files on the way back.
        raise ChipadaptError(
            f"resume_from: out={out} is inside the repository; use a folder outside it, e.g. "
            "out='${paths.cache_dir}/reproduce_small/full'"
        )
    if (out / "steps.json").is_file():
        log.info("resume_from: %s has its own ledger; the records in %s are not copied", out, records)
        return 0
    rewrite = local_paths(out)
    ledger = json.loads(rewrite((records / "steps.json").read_text(encoding="utf-8")))
    check_run_folders(ledger, out)
    # Only finished steps travel: an interrupted one has no checkpoint here to resume from, so it runs
    # again from the start (the records it had are left behind).
    kept = {name: record for name, record in ledger.items() if record.get("status") == "completed"}
    copied = 0
    for source in sorted(p for p in records.rglob("*") if p.is_file() and p != records / "steps.json"):
        relative = source.relative_to(records)
        target = out / relative
        if step_of(relative) not in kept or target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as tmp:
            try:
                Path(tmp).write_text(rewrite(source.read_text(encoding="utf-8")), encoding="utf-8")
            except UnicodeDecodeError:
                shutil.copyfile(source, tmp)
        copied += 1
    # The ledger last: an interrupted restore has none, so the next invocation restores again.
    write_json_atomic(out / "steps.json", kept)
    dropped = sorted(set(ledger) - set(kept))
    log.info(
        "resume_from: %d steps (%d record files) restored from %s into %s%s",
        len(kept),
        copied,
        records,
        out,
        f"; not finished there, so run again: {', '.join(dropped)}" if dropped else "",
    )
    return copied


def step_of(relative: Path) -> str:
    """The step a record belongs to: its folder's name, or for logs/<step>[.rebuild].log the file's."""
    if relative.parts[0] == "logs":
        return relative.name.removesuffix(".log").removesuffix(".rebuild")
    return relative.parts[0]


def check_run_folders(ledger: dict, out: Path) -> None:
    """Each recorded command names its step's folder; restored, it must be `out/<step>`, or no command
    would match and every step would run again."""
    for name, record in ledger.items():
        for arg in record.get("command") or []:
            key, _, value = arg.partition("=")
            if key in ("hydra.run.dir", "hydra.sweep.dir") and value != str(out / name):
                where = Path(value).parent
                hint = (
                    f"out={where}"
                    if where.is_absolute()
                    else f"a folder the records cannot be moved from ({where}: the run was in the repository)"
                )
                raise ChipadaptError(f"resume_from: step {name} ran in {value}, not under out={out}; use {hint}")
