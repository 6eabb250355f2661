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
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt.checkpoint_choice import find_checkpoint
from chipadapt.checkpoint_ownership import check_written_by_run, run_record, starting_folder
from chipadapt.errors import ChipadaptError
from chipadapt.io.hashing import sha256_json
from chipadapt.io.outputs import check_output_folder, written_by
from chipadapt.manifest import RunManifest, fingerprint_input

log = logging.getLogger(__name__)

COMMAND = "export"
EXPORT_RECORD = "export.json"


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
    dtype: str | None = None  # the exported weights' (`dtype=`); None: the run's


def plan_export(cfg: DictConfig) -> ExportJob:
    """The checkpoint, its run and the output, every refusal of them made before the job's manifest."""
    run, ckpt = find_checkpoint(cfg)
    record = run_record(run)
    # After the checks of the names above: reading a checkpoint imports torch (seconds of a refusal).
    from chipadapt.models.checkpoint_weights import checkpoint_layout, checkpoint_metadata

    checkpoint_layout(ckpt, "checkpoint")  # DeepSpeed and non-checkpoints refused before any reading
    content = checkpoint_metadata(ckpt, "checkpoint")
    step = content["global_step"]
    check_written_by_run(run, ckpt, record, content)
    dest = Path(str(cfg.output)).expanduser() if cfg.get("output") else run / "exports" / f"step-{step}"
    folder, model_record = starting_folder(run, record)
    return ExportJob(run, ckpt, record, step, dest, folder, model_record, export_dtype(cfg))


def sources(job: ExportJob) -> dict:
    """What the exported folder is made of, as its export.json records it: the same again is the same export."""
    return {
        "starting_model": {key: job.model_record.get(key) for key in ("path", "fingerprint", "tokenizer_fingerprint")},
        "checkpoint": {key: fingerprint_input(job.ckpt).get(key) for key in ("path", "fingerprint")},
        "run_config": sha256_json(job.record["config"]),
        "dtype": job.dtype,
    }


SOURCE_NAMES = {
    "starting_model": "the starting model",
    "checkpoint": "its content",
    "run_config": "the run's settings",
    "dtype": "dtype",
}


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


def earlier_exports(job: ExportJob) -> list[str]:
    """The folders of RUN/exports that a start-over found there: the earlier run's (stages/common.py)."""
    names = (job.record.get("inputs") or {}).get("earlier_run_exports")
    return [str(name) for name in names] if isinstance(names, list) else []


def export(job: ExportJob, manifest: RunManifest) -> dict:
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
    checkpoint = read_while_unchanged(module, job, ckpt_record["fingerprint"], manifest)
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
    published = with_dtype(merged_model(module.model), job.dtype)
    with_stage_records(published.config, record["config"])
    exported["dtype"] = str(published.dtype).removeprefix("torch.")
    log.info("writing %s", dest)
    try:
        save_hf_folder(
            published,
            tokenizer_as_saved(record["config"], folder),
            dest,
            command=COMMAND,
            records={EXPORT_RECORD: exported},
        )
    except OSError as err:
        exit_if_disk_full(err, dest)
        raise
    log.info("exported step %d of %s to %s in %.0f s", step, run, dest, time.perf_counter() - started)
    results = {"output": str(dest.resolve()), "step": step}
    manifest.update("results", results)
    return results


# How often, and how far apart, a checkpoint replaced while it was read (a live run saving `last.ckpt`) is
# read again before the export gives up: a save takes seconds, so a few short tries see it through.
READ_TRIES = 3
READ_RETRY_S = 2.0
# Where the exported weights' dtype may be set (`dtype=`); null keeps the run's: float32 for a full
# fine-tune (its master weights), model.dtype for a LoRA run's merged model.
DTYPES = ("float32", "bfloat16", "float16")
RUN_FAILED_STATUS = 1  # not the user's input (cli.DISK_FULL_STATUS): told in one line, exit 1


def read_while_unchanged(module, job: ExportJob, fingerprint: str, manifest: RunManifest) -> dict:
    """The checkpoint's weights read into `module`, tried again when the file changed while it was read (the
    run saved meanwhile); after READ_TRIES, one line and exit 1: the input was right, the run was saving."""
    from chipadapt.models.checkpoint_weights import load_module_weights

    step = None
    for attempt in range(READ_TRIES):
        if attempt:
            time.sleep(READ_RETRY_S)
            fingerprint = manifest.add_input("checkpoint", job.ckpt)["fingerprint"]
        checkpoint = load_module_weights(module, job.ckpt, "checkpoint")
        step = checkpoint["global_step"]
        if step == job.step and fingerprint_input(job.ckpt)["fingerprint"] == fingerprint:
            return checkpoint
        log.info("%s changed while it was read (the run saved again); reading it again", job.ckpt)
    moved = f", now of step {step}" if step != job.step else ""
    fail(
        f"checkpoint: {job.ckpt} was replaced while it was read, {READ_TRIES} times (the run is saving{moved}); "
        f"export again when it has saved, or name a step's checkpoint: run={job.run} step=N"
    )


def fail(message: str) -> None:
    """A failure that is not bad input: one line, exit 1 (the job's manifest says failed)."""
    import sys

    print(f"chipadapt: error: {message}", file=sys.stderr, flush=True)
    sys.exit(RUN_FAILED_STATUS)


def exit_if_disk_full(err: OSError, dest: Path) -> None:
    """A full disk while the export was written: the cli's line, with what to do for an export (nothing is left
    half-written: the folder is renamed in only when complete)."""
    from chipadapt.io.disk_full import disk_full_error, disk_full_message

    if disk_full_error(err) is None:
        return
    what = disk_full_message(err).split("; ")[0]
    fail(f"{what}; {dest} was not written (nothing half-written is left): free some space and run the export again")


def export_dtype(cfg: DictConfig) -> str | None:
    """`dtype`, checked: the exported weights' dtype, None for the run's."""
    dtype = cfg.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ChipadaptError(f"dtype: {dtype!r} is not one of {', '.join(DTYPES)} (or null: the run's)")
    return dtype


def with_dtype(model, dtype: str | None):
    """The model in `dtype` (config.torch_dtype follows: save_pretrained writes the weights' dtype)."""
    import torch

    return model if dtype is None else model.to(getattr(torch, dtype))


def with_stage_records(config, run_config: dict) -> None:
    """What the run's stage adds to the config.json of its model/ (stages/causal_lm.py): a SteerLM run's
    attribute order, which chat.py and bootstrap condition generation on; read from the run's settings, so
    a checkpoint of a run killed before its model/ was written carries it too."""
    from chipadapt.steerlm.attribute_record import record_attribute_order

    attributes = (run_config.get("data") or {}).get("attributes") or {}
    if isinstance(attributes, dict) and attributes.get("use") and attributes.get("order"):
        # and the chat template its attribute strings were rendered in
        record_attribute_order(config, list(attributes["order"]), (run_config.get("data") or {}).get("template"))


def refuse_model_settings(cfg: DictConfig) -> None:
    """`+model.dtype=...` and the like: export has no model settings (the run's manifest gives them), and
    an added key was silently ignored."""
    if cfg.get("model") is not None:
        raise ChipadaptError(
            "model: export.py takes the model's settings from the run's manifest; dtype=bfloat16 (or float16) "
            "sets the exported weights' dtype"
        )


def run(cfg: DictConfig) -> dict:
    from chipadapt.job import recorded_job
    from chipadapt.quiet import silence_known_noise

    silence_known_noise()
    out = Path(cfg.paths.output_dir)
    refuse_model_settings(cfg)
    job = plan_export(cfg)
    previous = "" if cfg.overwrite else exported_before(job)
    if previous is not None and job.dest.parent == job.run / "exports" and job.dest.name in earlier_exports(job):
        previous += ", an export of the earlier run this run started over from, not of this run"
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
