"""The entry behind export.py: a causal-LM run's checkpoint (last.ckpt, or a step's) as a Hugging Face
folder that evaluate.py, chat.py, merge.py and transformers open, while the run goes on or after it.

The model is rebuilt as the run built it: the module its stage config names, from the starting folder
its manifest.json records (the base model, or the augmented-tokenizer model in the cache), refused
when that folder's content changed since (a LoRA checkpoint holds only the adapters, and any model's
tokenizer and config come from there). The checkpoint's weights go in, LoRA is merged into the base,
and the folder is written as the run writes its model/ (stages/causal_lm.py), with export.json saying
what it came from."""

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.io.hashing import sha256_json
from chipadapt.io.jsonl import json_object
from chipadapt.io.outputs import check_output_folder, written_by
from chipadapt.manifest import RunManifest, fingerprint_input

log = logging.getLogger(__name__)

COMMAND = "export"
EXPORT_RECORD = "export.json"
CAUSAL_LM_RUNNER = "chipadapt.stages.causal_lm.run"
# Lightning's default checkpoint names: `epoch=0-step=4.ckpt` (save_top_k=-1 keeps one per save).
STEP_IN_NAME = re.compile(r"(?:^|[-_])step=(\d+)(?:[-_.]|$)")


def find_checkpoint(cfg: DictConfig) -> tuple[Path, Path]:
    """(run folder, checkpoint) from `checkpoint=`, `run=` and `step=`."""
    step = cfg.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ChipadaptError(f"step: {step!r} is not a whole number >= 0")
    run = Path(str(cfg.run)).expanduser() if cfg.get("run") else None
    if cfg.get("checkpoint"):
        if step is not None:
            raise ChipadaptError("step: give step= with run=RUN, or checkpoint=FILE alone (not both)")
        ckpt = Path(str(cfg.checkpoint)).expanduser()
        if not ckpt.exists():
            raise ChipadaptError(f"checkpoint: {ckpt} does not exist")
        if run is None and (ckpt / "checkpoints").is_dir() and (ckpt / "manifest.json").is_file():
            return ckpt, chosen_step(ckpt, None, "checkpoint")  # a run folder: its last.ckpt
        if run is None:
            if ckpt.parent.name != "checkpoints":
                raise ChipadaptError(
                    f"checkpoint: {ckpt} is not in a run's checkpoints/ folder; name its run too: run=RUN"
                )
            run = ckpt.parent.parent
        return run, ckpt
    if run is None:
        raise ChipadaptError(
            "checkpoint: required, not set (checkpoint=RUN/checkpoints/last.ckpt, or run=RUN [step=N])"
        )
    return run, chosen_step(run, step, "run")


def chosen_step(run: Path, step: int | None, key: str) -> Path:
    """The run's last.ckpt (step None), else the checkpoint of that optimizer step."""
    folder = run / "checkpoints"
    if not folder.is_dir():
        raise ChipadaptError(f"{key}: {run} has no checkpoints/ folder (not a training run, or none saved yet)")
    last = folder / "last.ckpt"
    if step is None:
        if not last.exists():
            raise ChipadaptError(f"{key}: {folder} has no last.ckpt yet; step=N picks another checkpoint")
        return last
    from chipadapt.models.checkpoint_weights import checkpoint_metadata

    named = {}
    for entry in sorted(folder.glob("*.ckpt")):
        found = STEP_IN_NAME.search(entry.name)
        if found:
            named.setdefault(int(found.group(1)), entry)
    if step in named:
        return named[step]
    last_step = checkpoint_metadata(last, key)["global_step"] if last.exists() else None
    if last_step == step:
        return last
    kept = sorted({*named, *([last_step] if last_step is not None else [])})
    raise ChipadaptError(
        f"step: {folder} has no checkpoint of step {step} (it has steps {', '.join(map(str, kept)) or 'none'}); "
        "a run keeps a checkpoint per save with callbacks.checkpoint.save_top_k=-1"
    )


def run_record(run: Path) -> dict:
    """The run's manifest.json: its resolved config and its inputs by content."""
    record = json_object(run / "manifest.json", "run")
    if record.get("kind") != "train" or not isinstance(record.get("config"), dict):
        raise ChipadaptError(f"run: {run}/manifest.json is not a training run's record")
    stage = record["config"].get("stage") or {}
    if (stage.get("runner") or {}).get("_target_") != CAUSAL_LM_RUNNER:
        raise ChipadaptError(
            f"run: {run} is a {stage.get('name', 'non-causal-LM')} run; export rebuilds causal-LM runs "
            f"(dapt, sft, steerlm) only: its model is {run}/model, written when the run ends"
        )
    return record


def starting_folder(run: Path, record: dict) -> tuple[Path, dict]:
    """The folder the run started from, refused when its content is not what the run recorded."""
    recorded = (record.get("inputs") or {}).get("model")
    if not isinstance(recorded, dict) or not recorded.get("path") or not recorded.get("fingerprint"):
        raise ChipadaptError(f"run: {run}/manifest.json records no starting model (inputs.model)")
    folder = Path(recorded["path"])
    if not folder.is_dir():
        raise ChipadaptError(
            f"run: the starting model {folder} ({run}/manifest.json inputs.model) is gone; the checkpoint needs "
            "its tokenizer and config (and, with LoRA, its weights)"
        )
    log.info("checking the starting model %s against the run's record", folder)
    current = fingerprint_input(folder)
    if current["fingerprint"] != recorded["fingerprint"]:
        raise ChipadaptError(
            f"run: the starting model {folder} changed since the run started from it (its content fingerprint "
            f"differs from {run}/manifest.json inputs.model); restore it to export this run's checkpoints"
        )
    return folder, current


def build_module(config: dict, folder: Path):
    """The run's LightningModule as its stage config builds it (dtype, LoRA and all), without a trainer."""
    stage = OmegaConf.create(config["stage"])
    return instantiate(stage.module)(model_folder=folder, val_split_names=[])


def tokenizer_as_saved(config: dict, folder: Path):
    """The starting folder's tokenizer, with the chat template a config template trained in (as the
    run's save writes it)."""
    from chipadapt.data.chat_templates import StringTemplate
    from chipadapt.models.hf_folder import load_tokenizer

    tokenizer = load_tokenizer(folder)
    template = (config.get("data") or {}).get("template")
    if isinstance(template, dict) and template.get("_target_"):
        built = instantiate(OmegaConf.create(template))(tokenizer=tokenizer)
        if isinstance(built, StringTemplate):
            tokenizer.chat_template = built.as_jinja()
    return tokenizer


def size_text(path: Path) -> str:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    size = sum(f.stat().st_size for f in files)
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


@dataclass(frozen=True)
class ExportJob:
    """What one export.py command reads and writes, known before any work."""

    run: Path
    ckpt: Path
    record: dict  # the run's manifest.json
    step: int
    dest: Path
    folder: Path  # the starting model
    model_record: dict  # its fingerprint, checked against the run's record


def plan_export(cfg: DictConfig) -> ExportJob:
    """The checkpoint, its run and the output, every refusal of them made before the job's manifest."""
    from chipadapt.models.checkpoint_weights import checkpoint_layout, checkpoint_metadata

    run, ckpt = find_checkpoint(cfg)
    record = run_record(run)
    checkpoint_layout(ckpt, "checkpoint")  # DeepSpeed and non-checkpoints refused before any reading
    step = checkpoint_metadata(ckpt, "checkpoint")["global_step"]
    dest = Path(str(cfg.output)).expanduser() if cfg.get("output") else run / "exports" / f"step-{step}"
    folder, model_record = starting_folder(run, record)
    return ExportJob(run, ckpt, record, step, dest, folder, model_record)


def sources(job: ExportJob) -> dict:
    """What the exported folder is made of, as its export.json records it: the same again is the same export."""
    return {
        "starting_model": {key: job.model_record.get(key) for key in ("path", "fingerprint", "tokenizer_fingerprint")},
        "checkpoint": {key: fingerprint_input(job.ckpt).get(key) for key in ("path", "fingerprint")},
        "run_config": sha256_json(job.record["config"]),
    }


SOURCE_NAMES = {"starting_model": "the starting model", "checkpoint": "its content", "run_config": "the run's settings"}


def exported_before(job: ExportJob) -> str | None:
    """None where `job.dest` holds export.py's output of this very checkpoint, from this run's settings and
    starting model (a rerun of the same command: a requeued job); else what differs, for the refusal.
    Not a folder of export's: check_output_folder says whose it is."""
    if written_by(job.dest) != COMMAND:
        return ""
    try:
        recorded = json.loads((job.dest / EXPORT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f", with no readable {EXPORT_RECORD}"
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sources"), dict):
        return f", with no readable {EXPORT_RECORD}"
    if recorded.get("checkpoint") != str(job.ckpt.resolve()) or recorded.get("step") != job.step:
        return f", of step {recorded.get('step')} of {recorded.get('checkpoint')}"
    before, now = recorded["sources"], sources(job)
    # Exports written before run_config was recorded name the whole manifest of the run, which a run that
    # goes on rewrites: those are compared by it.
    if "run_config" not in before:
        before = {**before, "run_config": None}
        if recorded["sources"].get("run_manifest") == fingerprint_input(job.run / "manifest.json")["fingerprint"]:
            before["run_config"] = now["run_config"]
    changed = [SOURCE_NAMES[name] for name in now if before.get(name) != now[name]]
    return f", of the same checkpoint file, but {' and '.join(changed)} changed since" if changed else None


def export(job: ExportJob, manifest: RunManifest) -> dict:
    from chipadapt.models.checkpoint_weights import load_module_weights
    from chipadapt.models.hf_folder import save_hf_folder
    from chipadapt.models.lora import merged_model

    run, ckpt, record, step, dest, folder = job.run, job.ckpt, job.record, job.step, job.dest, job.folder
    manifest.update("inputs", {"run": str(run.resolve()), "model": job.model_record})
    log.info("fingerprinting %s (%s)", ckpt, size_text(ckpt))
    ckpt_record = manifest.add_input("checkpoint", ckpt)

    started = time.perf_counter()
    log.info("loading the run's starting model %s (%s)", folder, size_text(folder))
    module = build_module(record["config"], folder)
    log.info("reading the weights of step %d from %s", step, ckpt)
    checkpoint = load_module_weights(module, ckpt, "checkpoint")
    if checkpoint["global_step"] != step or fingerprint_input(ckpt)["fingerprint"] != ckpt_record["fingerprint"]:
        raise ChipadaptError(f"checkpoint: {ckpt} was replaced while it was read (the run saved again); export again")
    exported = {
        "run": str(run.resolve()),
        "checkpoint": str(ckpt.resolve()),
        "step": step,
        "epoch": checkpoint.get("epoch"),
        "stage": record["config"]["stage"].get("name"),
        "lora_merged": bool((record["config"].get("peft") or {}).get("r")),
        "sources": {
            **sources(job),
            "run_manifest": fingerprint_input(run / "manifest.json")["fingerprint"],
        },
    }
    log.info("writing %s", dest)
    save_hf_folder(
        merged_model(module.model),
        tokenizer_as_saved(record["config"], folder),
        dest,
        command=COMMAND,
        records={EXPORT_RECORD: exported},
    )
    log.info("exported step %d of %s to %s in %.0f s", step, run, dest, time.perf_counter() - started)
    results = {"output": str(dest.resolve()), "step": step}
    manifest.update("results", results)
    return results


def run(cfg: DictConfig) -> dict:
    from chipadapt.job import recorded_job
    from chipadapt.quiet import silence_known_noise

    silence_known_noise()
    out = Path(cfg.paths.output_dir)
    job = plan_export(cfg)
    previous = "" if cfg.overwrite else exported_before(job)
    if previous is None:  # the same command again (a requeued job): its output is there, whole
        log.info(
            "export: %s holds step %d of %s, exported before from this checkpoint and inputs; not exported again",
            job.dest,
            job.step,
            job.ckpt,
        )
        return {"output": str(job.dest.resolve()), "step": job.step}
    check_output_folder(
        job.dest,
        COMMAND,
        "output",
        bool(cfg.overwrite),
        [("checkpoint", job.ckpt), ("the starting model", job.folder)],
        previous=previous,
    )
    with recorded_job(cfg, COMMAND, out) as manifest:
        return export(job, manifest)
