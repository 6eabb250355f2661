"""Copy each step's record (not its weights) beside the report, so every figure stays traceable
after the run folders are gone: runs/<step>/ with manifest, results, per-item records (each paired
test can be redone from them, and a person can read the failures), metrics, Hydra overrides and the
fingerprints of the models left out; runs/logs/<step>.log, what the step printed.
`resume_from=<report>/runs` starts a run folder from them on another machine (restore.py)."""

import shutil
from collections.abc import Callable
from pathlib import Path

from chipadapt.io.atomic import atomic_file
from chipadapt.reproduce.fingerprint import FINGERPRINT, ensure_fingerprint

# Small files that say what ran and what it measured; model weights, checkpoints and indexes are left out.
RECORD_FILES = {
    "manifest.json",
    "results.json",
    "metrics.csv",
    "tokenizer_report.json",
    "merge_manifest.json",
    "merge_diagnostics.csv",  # per-tensor angles and norms: the drift between the two models
    "sweep_report.csv",
    "sweep_report.json",
    "overrides.yaml",
    "config.yaml",
    "multirun.yaml",
    FINGERPRINT,  # the model left out, in a few tens of kilobytes: a rebuild elsewhere is checked against it
    "annotated.jsonl",  # SteerLM's attribute labels: the data its training step reads
}
MAX_BYTES = 2_000_000


def copy_atomic(source: Path, target: Path, rewrite: Callable[[str], str] | None = None) -> None:
    """Copy `source`; `rewrite` maps its text on the way (the records are JSON, YAML and CSV)."""
    with atomic_file(target) as tmp:
        if rewrite is None:
            shutil.copyfile(source, tmp)
        else:
            Path(tmp).write_text(rewrite(source.read_text(encoding="utf-8")), encoding="utf-8")


def archive_records(out: Path, names: list[str], target: Path, rewrite: Callable[[str], str] | None = None) -> int:
    """Copy the record files of the named step folders (any depth: a sweep's jobs are subfolders)."""
    copied = 0
    for name in names:
        copied += archive_logs(out, name, target, rewrite)
        folder = out / name
        if not folder.is_dir():
            continue
        ensure_fingerprint(folder)
        for path in folder.rglob("*"):
            if (
                (path.name in RECORD_FILES or path.name.endswith("_items.jsonl"))  # items: what paired tests read
                and path.is_file()
                and path.stat().st_size <= MAX_BYTES
                and ".stale" not in path.parts
            ):
                copy_atomic(path, target / name / path.relative_to(folder), rewrite)
                copied += 1
    if (out / "steps.json").is_file():
        copy_atomic(out / "steps.json", target / "steps.json", rewrite)
    return copied


def archive_logs(out: Path, name: str, target: Path, rewrite: Callable[[str], str] | None) -> int:
    """The step's logs, which its ledger entry names: a long one keeps its end (where a failure is told),
    and bytes that are not UTF-8 (a tool's raw output) are replaced rather than stopping the report."""
    copied = 0
    for log in (out / "logs" / f"{name}.log", out / "logs" / f"{name}.rebuild.log"):
        if not log.is_file():
            continue
        text = log.read_bytes()[-MAX_BYTES:].decode("utf-8", errors="replace")
        with atomic_file(target / "logs" / log.name) as tmp:
            Path(tmp).write_text(rewrite(text) if rewrite else text, encoding="utf-8")
        copied += 1
    return copied
