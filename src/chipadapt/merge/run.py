"""merge.py: stream two (or three) Hugging Face folders tensor by tensor through a merge method.

Writes an HF folder at `output` (temporary folder renamed when complete) with the chip model's
tokenizer, `merge_diagnostics.csv` (per tensor: lambda, angle, norms, fallback, extra rows) and
`merge_manifest.json`.
"""

import csv
import io
import json
import logging
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory, write_json_atomic
from chipadapt.manifest import git_state
from chipadapt.merge.io import EMBEDDING_MARKERS, SafetensorsModel, ShardWriter
from chipadapt.report import console

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model", "generation_config.json", "tokenizer_report.json")
ARCHITECTURE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size")
DIAGNOSTIC_COLUMNS = ("tensor", "shape", "lam", "angle_deg", "norm_chip", "norm_instruct", "norm_ratio", "fallback", "extra_rows")


def lambda_schedule(default: float, schedule) -> callable:
    """First matching pattern wins: [{pattern: 'layers\\.(0|1)\\.', lam: 0.3}, ...]."""
    rules = [(re.compile(rule["pattern"]), float(rule["lam"])) for rule in (schedule or [])]

    def lam_for(name: str) -> float:
        return next((lam for pattern, lam in rules if pattern.search(name)), default)

    return lam_for


def check_architecture(chip: SafetensorsModel, other: SafetensorsModel) -> None:
    for key in ARCHITECTURE_KEYS:
        if chip.config.get(key) != other.config.get(key):
            raise ChipadaptError(f"{other.key}: config.{key}={other.config.get(key)} differs from models.chip ({chip.config.get(key)})")


def merge_tensor(method, name: str, lam: float, chip, instruct, base):
    c, i, b = chip.get(name), instruct.get(name), base.get(name) if base else None
    extra = 0
    if c.shape != i.shape or (b is not None and b.shape != c.shape):
        shapes_differ_in_rows = c.shape[1:] == i.shape[1:] and (b is None or b.shape[1:] == c.shape[1:])
        if not (any(m in name for m in EMBEDDING_MARKERS) and shapes_differ_in_rows and c.shape[0] >= i.shape[0]):
            raise ChipadaptError(f"tensor {name}: shape {tuple(c.shape)} in models.chip vs {tuple(i.shape)} in models.instruct")
        # The chip model's augmented vocabulary: merge the rows both have, keep the chip's new rows.
        shared = i.shape[0] if b is None else min(i.shape[0], b.shape[0])
        extra = c.shape[0] - shared
        result = method(name, c[:shared], i[:shared], None if b is None else b[:shared], lam)
        result.tensor = torch.cat([result.tensor, c[shared:].float()])
    else:
        result = method(name, c, i, b, lam)
    result.diagnostics["extra_rows"] = extra
    return result.tensor.to(c.dtype), result.diagnostics


def run(cfg: DictConfig) -> dict:
    start = time.perf_counter()
    method = instantiate(cfg.merge.method)
    chip = SafetensorsModel(cfg.models.chip, "models.chip")
    instruct = SafetensorsModel(cfg.models.instruct, "models.instruct")
    check_architecture(chip, instruct)
    base = None
    if method.needs_base:
        if not cfg.models.base:
            raise ChipadaptError(f"models.base: merge={cfg.merge.name} needs a base model folder")
        base = SafetensorsModel(cfg.models.base, "models.base")
        check_architecture(chip, base)
    lam_for = lambda_schedule(float(cfg.merge.lam), cfg.merge.schedule)
    tied = chip.tied and instruct.tied and (base is None or base.tied)
    names = chip.names()
    if not tied and "lm_head.weight" not in names and chip.has("lm_head.weight"):
        names.append("lm_head.weight")  # one side has its own output embedding: write it out
    for other in (instruct, base):
        for name in other.names() if other else []:
            if not chip.has(name):
                raise ChipadaptError(f"tensor {name}: in {other.key} but not in models.chip")

    out = Path(cfg.output).expanduser()
    rows, fallbacks = [], Counter()
    with atomic_directory(out) as tmp:
        writer = ShardWriter(tmp, int(cfg.max_shard_bytes))
        with Progress(TextColumn(f"merge={cfg.merge.name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("", total=len(names))
            for name in names:
                lam = lam_for(name)
                tensor, diag = merge_tensor(method, name, lam, chip, instruct, base)
                writer.add(name, tensor)
                fallbacks[diag.get("fallback") or "none"] += 1
                rows.append({"tensor": name, "shape": "x".join(map(str, tensor.shape)), "lam": lam, **diag})
                bar.advance(task)
        writer.close()
        config = dict(chip.config, tie_word_embeddings=tied)
        write_json_atomic(tmp / "config.json", config)
        for file in TOKENIZER_FILES:
            if (chip.folder / file).is_file():
                shutil.copy2(chip.folder / file, tmp / file)
        table = io.StringIO()
        csv_writer = csv.DictWriter(table, fieldnames=DIAGNOSTIC_COLUMNS, extrasaction="ignore")
        csv_writer.writeheader()
        csv_writer.writerows(rows)
        (tmp / "merge_diagnostics.csv").write_text(table.getvalue())
        angles = [r["angle_deg"] for r in rows if r.get("angle_deg") is not None]
        seconds = time.perf_counter() - start
        input_bytes = sum(f.stat().st_size for m in (chip, instruct, base) if m for f in set(m.files.values()))
        summary = {
            "method": cfg.merge.name, "lam": float(cfg.merge.lam), "tensors": len(rows), "fallbacks": dict(fallbacks),
            "angle_deg_mean": sum(angles) / len(angles) if angles else None,
            "angle_deg_max": max(angles) if angles else None,
            "extra_rows": {r["tensor"]: r["extra_rows"] for r in rows if r["extra_rows"]},
            "seconds": round(seconds, 2), "input_bytes": input_bytes, "input_gb_per_s": input_bytes / 1e9 / seconds,
            "output_bytes": writer.total_bytes, "tied_embeddings": tied,
        }
        write_json_atomic(tmp / "merge_manifest.json", {
            "config": OmegaConf.to_container(cfg, resolve=True), "git": git_state(),
            "inputs": {m.key: str(m.folder) for m in (chip, instruct, base) if m},
            "summary": summary, "diagnostics_csv": "merge_diagnostics.csv",
        })
    if cfg.eval:
        # Evaluate the merged folder (sweeps compare lambdas on these numbers).
        from chipadapt.eval.run import evaluate_folder, write_results

        results = evaluate_folder(out, cfg.eval, cfg.device)
        write_results(results, Path(cfg.paths.output_dir), f"Evaluation of {cfg.merge.name} lam={cfg.merge.lam}")
        manifest = json.loads((out / "merge_manifest.json").read_text())
        write_json_atomic(out / "merge_manifest.json", {**manifest, "evaluation": results})
        summary["evaluation"] = results
    log.info("merge=%s lam=%s: %d tensors, fallbacks %s, mean angle %s deg, %.1f s (%.2f GB/s read) -> %s",
             cfg.merge.name, cfg.merge.lam, len(rows), dict(fallbacks),
             f"{summary['angle_deg_mean']:.2f}" if angles else "-", seconds, summary["input_gb_per_s"], out)
    return summary
