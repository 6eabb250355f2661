"""Curate: walk inputs in parallel, keep clean documents, drop duplicates, write shards and a report.

Output folder:
  handwritten/part-*.jsonl, generated/part-*.jsonl  corpus records {text, source, lang, path, generated}
  curation_report.json, curation_report.png           what each step did, characters by source/lang
Generated files get their own shards so a blend can weight them (data.sources.<name>.weight).
"""

import logging
import signal
import sys
import time
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chipadapt import interrupts
from chipadapt.curation.dedup import Deduplicator, lsh_index
from chipadapt.curation.filters import GeneratedRules
from chipadapt.curation.process import Settings, process_unit
from chipadapt.curation.redaction_key import redaction_key
from chipadapt.curation.report import chars_chart, summary_table
from chipadapt.curation.shards import ShardWriter
from chipadapt.curation.walk import units
from chipadapt.curation.workers import WorkerDied, WorkerPool
from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory, write_json_atomic
from chipadapt.io.lock import run_folder_lock
from chipadapt.io.outputs import check_output_folder
from chipadapt.report import console

log = logging.getLogger(__name__)
SKIPPED_EXAMPLES = 5  # paths kept per skip reason in the report
# Skips a user may not expect, said in the log as well as counted (a binary or an oversized file is
# what anyone would expect to be left out).
SKIPS_WORTH_A_WARNING = {
    "symlink": "file(s) skipped as symbolic links (curation reads regular files only; copy a linked file in "
    "to curate it)",
    "jsonl_too_large": ".jsonl file(s) skipped whole, over data.curate.limits.max_bytes (a file is read whole; "
    "raise the limit, or split the file, to curate its records)",
    "jsonl_without_text": '.jsonl file(s) skipped: their first line is not a record with a string "text" '
    "(logs or data of another kind, not corpus records)",
    "jsonl_malformed": '.jsonl file(s) of records skipped whole: a later line is not a record with a string "text" '
    "(the file is damaged; fix the line to curate its records)",
}


def settings_from(cfg: DictConfig) -> Settings:
    g = cfg.generated
    # The key lives in the cache; without redaction it is not needed, so an unusable cache is no error.
    key = {"path_key": redaction_key()} if cfg.redact else {}
    return Settings(
        max_bytes=int(cfg.limits.max_bytes),
        min_chars=int(cfg.limits.min_chars),
        max_lines=int(cfg.limits.max_lines),
        redact=bool(cfg.redact),
        near_dedup=bool(cfg.dedup.near),
        num_perm=int(cfg.dedup.num_perm),
        shingle=int(cfg.dedup.shingle),
        generated=GeneratedRules(
            banners=tuple(b.lower() for b in g.banners),
            banner_lines=int(g.banner_lines),
            max_mean_line_length=float(g.max_mean_line_length),
            max_line_length=int(g.max_line_length),
            max_compression_ratio=float(g.max_compression_ratio),
            netlist_instance_share=float(g.netlist_instance_share),
        ),
        **key,
    )


def source_names(paths: list[str]) -> dict[str, str]:
    """Each input's `source` label is its name (archives without their suffix); names must differ."""
    if not paths:
        raise ChipadaptError("data.curate.inputs: nothing to curate")
    named: dict[str, str] = {}
    for index, path in enumerate(paths):
        p = Path(path)
        if not p.exists():
            raise ChipadaptError(f"data.curate.inputs[{index}]: {path} does not exist")
        name = p.name.split(".")[0] if p.is_file() else p.name
        if name in named:
            raise ChipadaptError(f"data.curate.inputs[{index}]: a second input named {name!r} ({path})")
        named[name] = str(p)
    return named


def curate(cfg: DictConfig, dest: Path, overwrite: bool = False) -> dict:
    """Curate `cfg.inputs` into the folder `dest`: its shards and report appear together, in one
    rename, only when the run completes (a killed run leaves no shards; a rerun never mixes two)."""
    inputs = source_names(OmegaConf.to_container(cfg.inputs, resolve=True) or [])
    if cfg.dedup.near:  # checked before any output exists
        lsh_index(int(cfg.dedup.num_perm), float(cfg.dedup.threshold))
    dest = check_output_folder(
        dest, "curate", "output", overwrite, [(f"data.curate.inputs[{name}]", path) for name, path in inputs.items()]
    )
    with atomic_directory(dest, "curate") as staging:
        report = _curate_into(cfg, inputs, staging)
        complete_regardless_of_signals()
    return report


# What interrupts.py turns into a stop while the job works: SIGINT, SIGTERM and SLURM's warning signals.
STOP_SIGNALS = (*interrupts.STOP_SIGNALS, *interrupts.REQUEUE_SIGNALS)


def complete_regardless_of_signals() -> None:
    """From here on a stop signal is ignored: the corpus and its report are written, and what is left (the
    rename that publishes them, the job's exit) takes a moment. Where a signal stopped the job after the
    rename, the line said "nothing was published" over a published corpus, whose rerun is then refused
    without overwrite=true; later, once Python's exit has put the default handlers back, the process died
    of the signal with no line at all (status 143). Ignored (SIG_IGN, which that exit keeps) the job ends
    as it would have a moment later: its summary printed, status 0. Only the handlers interrupts.py
    installed are replaced (a caller's own, pytest's, stay); the next job of a sweep installs them again."""
    for sig in STOP_SIGNALS:
        if interrupts.owns(sig):
            signal.signal(sig, signal.SIG_IGN)  # a signal pending until now still stops the job, unpublished


def _curate_into(cfg: DictConfig, inputs: dict[str, str], out: Path) -> dict:
    settings = settings_from(cfg)
    work = list(units(inputs))
    writers = {kind: ShardWriter(out / kind, int(cfg.docs_per_shard)) for kind in ("handwritten", "generated")}
    dedup = Deduplicator(near=settings.near_dedup, num_perm=settings.num_perm, threshold=float(cfg.dedup.threshold))
    skipped, generated, redactions, records_skipped = Counter(), Counter(), Counter(), Counter()
    # skip reason -> the first few paths (with line and cause, if the reason needs them), so the user can find them
    examples = defaultdict(list)
    chars = defaultdict(Counter)
    # Every file seen is read or skipped for one reason: files == read + sum(skipped).
    files = read = total_bytes = written = record_files = records_read = 0

    start = time.perf_counter()
    with (
        WorkerPool(int(cfg.workers), partial(process_unit, s=settings)) as pool,
        Progress(
            TextColumn("curating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as bar,
    ):
        task = bar.add_task("", total=len(work))
        # imap keeps input order, so which copy of a duplicate is kept does not depend on timing.
        for results in pool.imap(work):
            bar.advance(task)
            for r in results:
                if r.line:  # a record of the .jsonl file counted just before it
                    records_read += 1
                    if r.status != "ok":
                        records_skipped[r.status] += 1
                        continue
                else:
                    files += 1
                    total_bytes += r.bytes
                    if r.status == "records":
                        read += 1
                        record_files += 1
                        continue
                    if r.status != "ok":
                        skipped[r.status] += 1
                        if len(examples[r.status]) < SKIPPED_EXAMPLES:
                            examples[r.status].append(f"{r.path}:{r.detail}" if r.detail else r.path)
                        continue
                    read += 1
                doc_id = f"{r.source}/{r.path}"
                if dedup.check(doc_id, r.digest, r.signature) is not None:
                    continue
                redactions.update(r.redactions)
                if r.generated:
                    generated[r.generated] += 1
                kind = "generated" if r.generated else "handwritten"
                writers[kind].write(
                    {
                        "text": r.text,
                        "source": r.source,
                        "lang": r.lang,
                        "path": r.path,
                        "generated": bool(r.generated),
                        "generated_reason": r.generated,
                    }
                )
                chars[r.source][r.lang] += len(r.text)
                written += 1
    for writer in writers.values():
        writer.close()
    seconds = time.perf_counter() - start
    for reason, why in SKIPS_WORTH_A_WARNING.items():
        if skipped[reason]:
            log.warning(
                "%d %s: %s%s",
                skipped[reason],
                why,
                # "; ": an example with its detail holds commas ("bugs.jsonl:2: not JSON (..., column 9)")
                "; ".join(examples[reason]),
                "; ..." if skipped[reason] > len(examples[reason]) else "",
            )

    if not written:  # a corpus of nothing would train nothing: said before anything is published
        raise ChipadaptError(
            f"data.curate.inputs: no document kept from {', '.join(inputs.values()) or 'no input'} ({files} file(s) "
            f"seen, {read} read, skipped: {dict(skipped) or 'none'}); nothing was published"
        )
    for source, path in inputs.items():  # one input of several that gave nothing (a wrong folder, say)
        if source not in chars:
            log.warning("data.curate.inputs[%s]: no document kept from %s", source, path)
    largest = sorted(dedup.clusters.items(), key=lambda kv: -len(kv[1]))[:20]
    report = {
        "inputs": inputs,
        "files_seen": files,
        "files_read": read,
        "bytes_seen": total_bytes,
        "seconds": round(seconds, 2),
        "files_per_s": files / seconds if seconds else 0.0,
        "mb_per_s": total_bytes / 1e6 / seconds if seconds else 0.0,
        "documents_written": written,
        "skipped": dict(skipped),
        "skipped_examples": dict(examples),
        "records": {"files": record_files, "read": records_read, "skipped": dict(records_skipped)},
        "duplicates": {
            "exact": dedup.exact_removed,
            "near": dedup.near_removed,
            "clusters": len(dedup.clusters),
            "largest_clusters": [{"kept": k, "removed": v[:10], "size": len(v) + 1} for k, v in largest],
        },
        "generated": dict(generated),
        "redactions": dict(redactions),
        "chars_by_source_lang": {s: dict(c) for s, c in chars.items()},
        # Relative to the published folder (the shards are written in a staging folder first).
        "shards": {kind: [str(Path(p).relative_to(out)) for p in w.written] for kind, w in writers.items()},
    }
    if chars:
        chars_chart(report, out / "curation_report.png")
    write_json_atomic(out / "curation_report.json", report)
    console.print(summary_table(report))
    return report


# A failed curation, not refused input: status 2 would put back the folder's records of an earlier run.
FAILED_STATUS = 1


def curate_job(cfg: DictConfig) -> dict:
    """`python -m chipadapt.data.curate`: the curated corpus lands in `<run dir>/corpus/`."""
    out = Path(cfg.paths.output_dir)
    try:
        with run_folder_lock(out):
            return curate(cfg.data.curate, out / "corpus", bool(cfg.overwrite))
    except WorkerDied as died:  # the OOM killer, most often: one line, as the CLI says any failure it knows
        log.debug("curation worker died", exc_info=True)
        # The pool stopped the other workers on its way out, and the staging folder went with the error.
        print(
            f"chipadapt: error: {died}; the other workers were stopped and nothing was published: a rerun of "
            "the same command starts over",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(FAILED_STATUS)
