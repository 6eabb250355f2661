"""`stage=tokenizer`: build the augmented tokenizer + resized model into DIR/model/ and write
DIR/tokenizer_report.json (the contract other scripts read). No training.

A rerun with the same settings in a folder this stage completed is passed (`finished_before`), as
train.py passes a DAPT run that completed: a sweep rerun after an interruption goes on with the jobs
that did not finish. What this stage read is recorded through the build it published: the build's
folder name is a key of the base model's files, every source's content and the settings; the
manifest also records the base model and every data source by content, as DAPT's does."""

import json
import logging
import shutil
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from chipadapt.finished_run import completed_record
from chipadapt.io.atomic import atomic_directory, write_json_atomic
from chipadapt.manifest import RunManifest, fingerprint_input
from chipadapt.models.hf_folder import TOKENIZER_REPORT_NAME as REPORT_NAME
from chipadapt.models.hf_folder import resolve_model_folder
from chipadapt.stages.common import begin, record_data_inputs, starting_model

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    begin(cfg)
    folder = starting_model(cfg, manifest)
    manifest.add_input("base_model", resolve_model_folder(cfg.model))
    record_data_inputs(cfg, manifest)
    report = json.loads((folder / REPORT_NAME).read_text())
    if report.get("documents"):  # which documents chose the tokens and which measured them (held out)
        manifest.update("data", {"documents": report["documents"], "val_fraction": report["settings"].get("held_out")})
    if not report.get("new_tokens"):
        log.warning(
            "the domain tokenizer added no tokens (every candidate is in the base vocabulary already or below "
            "the tokenizer.adapt thresholds): %s/model is the base model",
            out,
        )
    with atomic_directory(out / "model", "train") as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
    write_json_atomic(out / REPORT_NAME, report)
    keys = ("domain_reduction_in_sample_pct", "general_change_pct", "new_tokens", "build_seconds")
    metrics = {k: report.get(k) for k in keys}
    # The saving on DAPT's held-out documents, with its paired 95% interval and n (null: nothing held out).
    held = report.get("domain_held_out_reduction") or {}
    low, high = held.get("reduction_ci_pct") or (None, None)
    metrics |= {
        "domain_held_out_reduction_pct": held.get("reduction_pct"),
        "domain_held_out_reduction_ci_low": low,
        "domain_held_out_reduction_ci_high": high,
        "domain_held_out_documents": held.get("documents", 0),
    }
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


def finished_before(cfg: DictConfig, out: Path) -> dict | None:
    """The metrics of this very build when `out` holds it completed: the same settings (the resolved
    config), the build the inputs as they are now key to (the same base model files, sources and
    settings: `DomainTokenizer.build_folder`), and `out/model/` as it was published. None otherwise,
    and always with overwrite=true; train.py then checks the folder as for any stage."""
    recorded = completed_record(cfg, out)
    if recorded is None:
        return None
    build = (recorded.get("inputs") or {}).get("model")
    if not isinstance(build, dict) or not build.get("fingerprint"):
        return None
    base = resolve_model_folder(cfg.model)
    build_folder = getattr(instantiate(cfg.tokenizer.adapt), "build_folder", None)
    # tokenizer=base builds nothing: its "build" is the model folder itself, compared by content.
    if str((build_folder(base) if build_folder else base).resolve()) != build.get("path"):
        return None
    if build_folder is None and fingerprint_input(base)["fingerprint"] != build["fingerprint"]:
        return None
    if fingerprint_input(out / "model")["fingerprint"] != build["fingerprint"]:
        return None  # DIR/model/ changed since it was published
    return recorded.get("metrics") or {}
