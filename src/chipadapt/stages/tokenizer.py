"""`stage=tokenizer`: build the augmented tokenizer + resized model into DIR/model/ and write
DIR/tokenizer_report.json (the contract other scripts read). No training."""

import json
import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig

from chipadapt.io.atomic import atomic_directory, write_json_atomic
from chipadapt.manifest import RunManifest
from chipadapt.models.hf_folder import TOKENIZER_REPORT_NAME as REPORT_NAME
from chipadapt.stages.common import begin, starting_model

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    begin(cfg)
    folder = starting_model(cfg, manifest)
    report = json.loads((folder / REPORT_NAME).read_text())
    if not report.get("new_tokens"):
        log.warning(
            "the domain tokenizer added no tokens (every candidate is in the base vocabulary already or below "
            "the tokenizer.adapt thresholds): %s/model is the base model",
            out,
        )
    with atomic_directory(out / "model", "train") as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
    write_json_atomic(out / REPORT_NAME, report)
    metrics = {k: report[k] for k in ("domain_reduction_pct", "general_change_pct", "new_tokens", "build_seconds")}
    # The starting model's bits/byte cost per output rule, flat so sweeps and compare.py can read it.
    for rule, row in (report.get("starting_bpb") or {}).get("outputs", {}).items():
        metrics |= {
            f"starting_bpb.{rule}.{kind}_minus_base": row.get(f"{kind}_minus_base") for kind in ("domain", "general")
        }
        if row.get("domain_minus_base_ci"):
            low, high = row["domain_minus_base_ci"]
            metrics |= {
                f"starting_bpb.{rule}.domain_minus_base_ci_low": low,
                f"starting_bpb.{rule}.domain_minus_base_ci_high": high,
            }
    manifest.update("metrics", metrics)
    return metrics
