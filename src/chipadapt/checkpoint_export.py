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

    named: dict[int, list[Path]] = {}
    for entry in sorted(folder.glob("*.ckpt")):
        found = STEP_IN_NAME.search(entry.name)
        if found:
            named.setdefault(int(found.group(1)), []).append(entry)
    if step in named:
        return one_of_step(run, named[step], step, key)
    last_step = checkpoint_metadata(last, key)["global_step"] if last.exists() else None
    if last_step == step:
        return last
    kept = sorted({*named, *([last_step] if last_step is not None else [])})
    raise ChipadaptError(
        f"step: {folder} has no checkpoint of step {step} (it has steps {', '.join(map(str, kept)) or 'none'}); "
        "a run keeps a checkpoint per save with callbacks.checkpoint.save_top_k=-1"
    )


def one_of_step(run: Path, candidates: list[Path], step: int, key: str) -> Path:
    """The one checkpoint of `step` among files whose names claim it: where there are several (an earlier run's
    under another callbacks.checkpoint.filename, or from before settings were recorded, which a start-over
    keeps), the one whose recorded settings are the run's; the first by name was exported as the run's, which
    could be the earlier run's weights. Refused in one line, naming the files, where that is not one. Names of
    one file (a `best-step=2.ckpt` link to the step's checkpoint) are one candidate; one that cannot be read (a
    file cut short, a sharded folder without its meta.pt) is set aside, said in a line, rather than stopping the
    export of the one that is the run's."""
    candidates = distinct_files(candidates)
    if len(candidates) == 1:
        return candidates[0]
    from chipadapt.models.checkpoint_weights import checkpoint_metadata
    from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY

    record = run_record(run)
    matching = []
    for entry in candidates:
        try:
            content = checkpoint_metadata(entry, key)
        except (ChipadaptError, OSError) as err:
            log.warning("step: %s set aside, it cannot be read (%s)", entry, " ".join(str(err).split()))
            continue
        if not isinstance(content.get(CHECKPOINT_KEY), dict):
            continue  # no settings recorded: nothing tells whose it is
        try:
            check_written_by_run(run, entry, record, content)
        except ChipadaptError:
            continue
        matching.append(entry)
    if len(matching) == 1:
        return matching[0]
    why = (
        "none records the settings of this run"
        if not matching
        else f"{len(matching)} record this run's settings ({', '.join(entry.name for entry in matching)})"
    )
    raise ChipadaptError(
        f"step: {run / 'checkpoints'} holds {len(candidates)} checkpoints of step {step} "
        f"({', '.join(entry.name for entry in candidates)}) and {why}; name the one to export with checkpoint=FILE"
    )


def distinct_files(candidates: list[Path]) -> list[Path]:
    """`candidates` less the names of a file already in it (links, hard links): each file by its own name where
    a candidate is that (a link's target before the link), else by its first."""
    kept: list[Path] = []
    for entry in sorted(candidates, key=Path.is_symlink):  # stable: by name within each kind
        try:
            if any(entry.samefile(other) for other in kept):
                continue
        except OSError:  # a dangling link is its own candidate, set aside as unreadable
            pass
        kept.append(entry)
    return kept


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
    dtype: str | None = None  # the exported weights' (`dtype=`); None: the run's


def plan_export(cfg: DictConfig) -> ExportJob:
    """The checkpoint, its run and the output, every refusal of them made before the job's manifest."""
    from chipadapt.models.checkpoint_weights import checkpoint_layout, checkpoint_metadata

    run, ckpt = find_checkpoint(cfg)
    record = run_record(run)
    checkpoint_layout(ckpt, "checkpoint")  # DeepSpeed and non-checkpoints refused before any reading
    content = checkpoint_metadata(ckpt, "checkpoint")
    step = content["global_step"]
    check_written_by_run(run, ckpt, record, content)
    dest = Path(str(cfg.output)).expanduser() if cfg.get("output") else run / "exports" / f"step-{step}"
    folder, model_record = starting_folder(run, record)
    return ExportJob(run, ckpt, record, step, dest, folder, model_record, export_dtype(cfg))


def check_written_by_run(run: Path, ckpt: Path, record: dict, content: dict) -> None:
    """Refuse a checkpoint that is not this run's: one written by another run in the same folder (one an
    earlier version's start-over left there: a step of the discarded run its shorter successor did not reach),
    told by the settings it recorded (checkpoint_records.RecordSettings) against the run's manifest, and by
    a step beyond what the manifest says the run trained. Exported, its weights were named the new run's.
    What a resume may change (the length, micro-batch size, activation checkpointing) and the content of the
    data (the manifest records it by other means) are not compared; a checkpoint from before settings were
    recorded is not either."""
    from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY
    from chipadapt.stages.resume_settings import (
        CONTENT,
        WARNED,
        comparable_settings,
        ends_with,
        trajectory_settings,
    )

    step, config = content.get("global_step"), record["config"]
    trained = (record.get("metrics") or {}).get("global_step") if record.get("status") == "completed" else None
    max_steps = (config.get("trainer") or {}).get("max_steps")
    bound, said = (trained, "trained {} steps") if isinstance(trained, int) else (max_steps, "trains at most {} steps")
    # A run that resumed a checkpoint past its length (a shorter overwrite=true rerun whose attempt did not
    # complete) holds that step as its own: bounded by the step it resumed (stages/common.train_module).
    resumed = ((record.get("inputs") or {}).get("resumed") or {}).get("step")
    if not isinstance(trained, int) and isinstance(resumed, int) and isinstance(bound, int) and 0 <= bound < resumed:
        bound, said = resumed, "resumed at step {} and trains no further"
    if isinstance(bound, int) and bound >= 0 and isinstance(step, int) and step > bound:
        raise ChipadaptError(
            f"checkpoint: {ckpt} holds step {step}, but {run}/manifest.json says this run {said.format(bound)}: "
            "it is an earlier run's checkpoint in this folder, not this run's weights"
        )
    recorded = content.get(CHECKPOINT_KEY)
    if not isinstance(recorded, dict):
        return
    # Read as the resume check reads them: what resumes after a version change is this run's.
    recorded, current = comparable_settings(recorded, trajectory_settings(OmegaConf.create(config), contents=False))
    changed = sorted(
        key
        for key in recorded.keys() | current.keys()
        if not key.endswith(CONTENT) and not ends_with(key, WARNED) and recorded.get(key) != current.get(key)
    )
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        first = changed[0]
        raise ChipadaptError(
            f"checkpoint: {ckpt} was written by a run with other settings than {run}/manifest.json records "
            f"({first}: {recorded.get(first)!r} there, {current.get(first)!r} in the manifest{more}): an earlier "
            "run's checkpoint in this folder, not this run's weights"
        )


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
