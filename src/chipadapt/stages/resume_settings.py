"""A checkpoint remembers the settings of the run that wrote it, and a resume checks them.

Resuming continues the optimizer, the data order and the lr schedule from `last.ckpt`; a rerun in
that folder with another lr, dataset or model would silently carry on the old run under the new
run's name. So every checkpoint stores the run's trajectory settings: the resolved config without
what only says where outputs go, how progress is shown, what hardware runs it, or what is evaluated
after training; the cache, shared-data and package folders (which move between machines and SLURM
nodes) by name. A resume with other settings is an error. A few may change with a
warning: the run's length (training a finished run longer; a scheduled lr is then recomputed for the
new length), and what is turned after running out of memory: activation checkpointing and the
micro-batch size (with the global batch unchanged). The sampler cuts the data by global batches
(data/resume_sampler.py), so every optimizer step trains on the same sequences at any micro-batch
size; only the order in which their gradients add up differs, and, where rows hold different numbers
of trained tokens (SFT answers), how the per-micro-batch mean loss weighs them (as with another
number of processes). Lightning counts micro-batches in its loop state, which checkpoint_records.RecordSettings converts
to the new accumulation on resume (without that, a resume from accumulation 2 to 4 at an odd step
stepped after half a global batch, and the weights differed from an uninterrupted run's by 2e-3)."""

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from chipadapt.config_typing import RETIRED_KEYS
from chipadapt.errors import ChipadaptError
from chipadapt.io.dotted_keys import flatten as flatten  # re-exported: output_rerun reads its settings so
from chipadapt.run_settings import (
    RENAMED_VALUES,
    describe,
    run_settings,
    unread_sections,
    with_earlier_meanings,
    without_unread,
)
from chipadapt.stages.checkpoint_records import ACCUMULATION_KEY, CHECKPOINT_KEY, PROCESSES_KEY

log = logging.getLogger(__name__)

# Where outputs go, what is logged or shown, and which machine runs it: none changes what is trained.
NOT_TRAJECTORY = {
    "paths",
    "logger",
    "callbacks",
    "hydra",
    "resume",
    "overwrite",
    "optimized_metric",
    "plan",
    "hparams_search",
    "matmul_precision",
    "trainer",  # devices, strategy, logging cadence; its keys that shape training are below
}
TRAINER_KEYS = ("precision", "gradient_clip_val", "max_steps", "max_epochs")
# Keys (by their last dotted parts: values are copied into stage.module/stage.datamodule) that are
# read only before or after training.
IGNORED = (
    "num_workers",
    "validate_before",
    "val_max_bytes",
    "val_max_sequences",  # retired (config_schema.RETIRED_KEYS), in checkpoints of runs before val_max_bytes
    "val_max_conversations",
    "evaluate_after",
    "eval_queries",  # also leaves its questions' copies out of training: told by data.training_order instead
    "eval_split",  # retriever.eval_split (which eval_queries are evaluated after training)
    "eval_ks",
    "eval_batch_size",
    "encoder.search",
)
LENGTH = ("trainer.max_steps", "trainer.max_epochs")
WARNED = (*LENGTH, "gradient_checkpointing", "micro_batch_size")
SHOWN = 6  # changes named in the error
# A folder checkpoint (sharded FSDP, DeepSpeed) keeps what is not a tensor in one of these.
FOLDER_METADATA = (
    "meta.pt",  # FSDP sharded
    "checkpoint/mp_rank_00_model_states.pt",  # DeepSpeed ZeRO 1-2
    "checkpoint/zero_pp_rank_0_mp_rank_00_model_states.pt",  # DeepSpeed ZeRO 3
)


def ends_with(key: str, names: tuple[str, ...]) -> bool:
    return any(key == name or key.endswith("." + name) for name in names)


def trajectory_settings(cfg: DictConfig, contents: bool = True) -> dict[str, object]:
    """The resolved config as dotted keys, without the sections and keys that do not shape training,
    read as run_settings reads a run's settings (folders that differ between machines by name, sections
    the stage never reads left out). A user's own model or data folder is compared as given: another one
    is another run; a training source's content too (data_contents), so data replaced in place is."""
    config = OmegaConf.to_container(cfg, resolve=True)
    stage = (config.get("stage") or {}).get("name")
    kept = {key: value for key, value in config.items() if key not in NOT_TRAJECTORY}
    trainer = config.get("trainer") or {}
    kept["trainer"] = {key: trainer.get(key) for key in TRAINER_KEYS}
    settings = {
        key: value
        for key, value in run_settings(kept, stage, config.get("paths")).items()
        if not ends_with(key, IGNORED)
    }
    # `contents`: off where only the settings are compared (export.py's check of a checkpoint against its
    # run's manifest, which should not read a corpus through).
    if contents and "data" not in unread_sections(stage):  # the retriever's data is its passages
        settings.update(data_contents(config))
    return settings


# A training source's content, beside its path: the same path with other data is other training (the
# README: "a rerun ... with other data stops"). Validation sources do not shape training: not compared.
CONTENT = ".content"


def data_contents(config: dict) -> dict[str, str | None]:
    """`data.sources.NAME.content`: the fingerprint of each local training source's content (memoised per
    process); a hub id is no local path (its revision is its content)."""
    contents = {}
    for name, source in ((config.get("data") or {}).get("sources") or {}).items():
        path = Path(str(source.get("path"))).expanduser() if isinstance(source, dict) and source.get("path") else None
        if path is not None and path.exists():
            contents[f"data.sources.{name}{CONTENT}"] = source_content(source, f"data.sources.{name}", path)
    return contents


def source_content(source: dict, key: str, path: Path) -> str | None:
    """A file's fingerprint; for a folder, that of the files its reader selects (suffixes, no hidden
    entries), so a `git fetch` or a build in a source repository between preemption and requeue is
    no change of data."""
    from chipadapt.data.source_spec import source_files, source_spec
    from chipadapt.io.hashing import fingerprint_file, sha256_json
    from chipadapt.manifest import fingerprint_input

    if path.is_dir():
        try:
            files = source_files(source_spec(source, key), key)
        except ChipadaptError:  # not a DAPT source (a chat source's settings): the folder as a whole
            files = []
        if files:
            return sha256_json([[str(f.relative_to(path)), fingerprint_file(f)] for f in files])
    return fingerprint_input(path)["fingerprint"]


def run_manifest(out: Path) -> dict:
    """The train manifest of run folder `out`; {} where there is none or it cannot be read."""
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) and manifest.get("kind") == "train" else {}


def recorded_settings(ckpt: Path) -> dict | None:
    """The settings `ckpt` was written with; None for a checkpoint from before they were recorded."""
    content = checkpoint_metadata(ckpt)
    if content is None:
        log.warning("%s: a checkpoint folder without %s; its settings are not compared", ckpt, FOLDER_METADATA)
        return None
    return content.get(CHECKPOINT_KEY)


def checkpoint_step(ckpt: Path) -> int | None:
    """The optimizer steps `ckpt` holds, the first step a run resumed from it logs; None where unknown."""
    step = (checkpoint_metadata(ckpt) or {}).get("global_step")
    return step if isinstance(step, int) else None


def checkpoint_metadata(ckpt: Path) -> dict | None:
    """What a checkpoint holds besides its tensors; None for a folder checkpoint without its metadata file."""
    path = ckpt
    if ckpt.is_dir():
        path = next((ckpt / name for name in FOLDER_METADATA if (ckpt / name).is_file()), None)
        if path is None:
            return None
    try:
        # mmap: the tensors are not read, only the small dictionaries around them.
        content = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as err:  # noqa: BLE001 - whatever unpickling raises, the user gets one line
        raise ChipadaptError(
            f"{path}: checkpoint cannot be read ({type(err).__name__}: {err}); resume=false starts the run over"
        ) from None
    if not isinstance(content, dict):
        raise ChipadaptError(f"{path}: not a Lightning checkpoint; resume=false starts the run over")
    return content


def with_current_names(ckpt: Path | None, recorded: dict) -> dict:
    """`recorded` with the values an earlier chipadapt named otherwise renamed; said for a resume (`ckpt`)."""
    renamed = {key: RENAMED_VALUES[v] for key, v in recorded.items() if isinstance(v, str) and v in RENAMED_VALUES}
    if renamed and ckpt is not None:
        log.warning(
            "%s was written with Hugging Face's warm-up (its first step at lr 0), resumed with chipadapt's: the "
            "lr of a warm-up step still to run differs by at most optim.lr/(num_warmup_steps+1); after the "
            "warm-up it is the same",
            ckpt,
        )
    return {**recorded, **renamed}


def overrides_back(keys: list[str], recorded: dict, current: dict) -> list[str] | None:
    """The command-line overrides that give `keys` their recorded values: the keys a user sets (not the copies
    under stage.*, not a source's content) with a plain value, present in this version's config. None where
    they would not give every key back (a key only the recorded run has: `optim=` or `model=` switched since,
    whose group's other keys no override of a key of this config brings back): a partial answer is refused
    again."""
    found, given = [], set()
    for key in keys:
        value = recorded.get(key)
        if key.startswith("stage.") or key.endswith(CONTENT):
            continue
        if key not in recorded or key not in current:
            return None
        if value is None or isinstance(value, bool):
            found.append(f"{key}={'null' if value is None else str(value).lower()}")
        elif isinstance(value, (int, float)) or (isinstance(value, str) and value and value.isprintable()):
            found.append(f"{key}={_shell_word(str(value))}")
        else:
            return None
        given.add(key)
    changes = {(repr(recorded.get(key)), repr(current.get(key))) for key in given}
    for key in keys:
        # A copy under stage.* comes back with the key it copies; a source's content with its path.
        if key.startswith("stage.") and (repr(recorded.get(key)), repr(current.get(key))) not in changes:
            return None
        if key.endswith(CONTENT) and f"{key[: -len(CONTENT)]}.path" not in given:
            return None
    return found


# A shipped template's earlier ending, and the template that keeps it: a checkpoint written before the change
# resumes with it (its "\n" given on the command line is a backslash and an n).
EARLIER_TEMPLATE_ENDS = {"\n": "data/template=chipnemo_v1"}


def earlier_template(keys: list[str], recorded: dict) -> list[str] | None:
    """The template option that gives `keys` their recorded values, where they are exactly a reply's ending
    that an earlier chipadapt's shipped template wrote (conf/data/template/chipnemo_v1.yaml)."""
    if not keys or not all(ends_with(key, ("template.assistant_end",)) for key in keys):
        return None
    options = {EARLIER_TEMPLATE_ENDS.get(_text_value(recorded.get(key))) for key in keys}
    return [options.pop()] if len(options) == 1 and None not in options else None


def _text_value(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _shell_word(text: str) -> str:
    plain = all(c.isalnum() or c in "._-/:=+" for c in text)  # else quoted: the shell leaves ${..} alone
    return text if plain else "'" + text.replace("'", "'\\''") + "'"


# Recorded overrides quoted in a refusal up to this length; longer ones are pointed to.
QUOTED_OVERRIDES = 240


def recorded_overrides(ckpt: Path) -> str:
    """Where the run that wrote `ckpt` says how it was launched: its manifest's overrides, quoted where short
    (a refused attempt writes no manifest, so it is still that run's); its .hydra/overrides.yaml otherwise
    (which a refused attempt puts back as it found it: run_folder_guard)."""
    out = ckpt.parent.parent
    overrides = run_manifest(out).get("overrides")
    if isinstance(overrides, list) and overrides:
        text = " ".join(_shell_word(str(item)) for item in overrides)
        if len(text) <= QUOTED_OVERRIDES:
            return f"its overrides, as {out / 'manifest.json'} records them: {text}"
        return f"its overrides: `overrides` in {out / 'manifest.json'}"
    return f"its overrides: {out / '.hydra' / 'overrides.yaml'}"


def settings_changes(ckpt: Path, cfg: DictConfig) -> tuple[list[str], dict, dict] | None:
    """The settings keys in which `ckpt`'s run and `cfg` differ, with both sides' settings (as the resume
    check compares them); None for a checkpoint from before settings were recorded."""
    recorded = recorded_settings(ckpt)
    if recorded is None:
        return None
    recorded, current = comparable_settings(recorded, trajectory_settings(cfg), ckpt)
    changed = sorted(key for key in recorded.keys() | current.keys() if recorded.get(key) != current.get(key))
    return changed, recorded, current


def comparable_settings(recorded: dict, current: dict, ckpt: Path | None = None) -> tuple[dict, dict]:
    """A checkpoint's recorded settings and a run's, read alike: what a change of chipadapt's version alone
    made differ is not a difference (a renamed value, a key added since read at its earlier meaning, a
    section the stage never reads that an earlier version recorded, a retired key, data contents where the
    record predates them). The resume check and export.py's check of a checkpoint against its run both
    compare through it, so a checkpoint that resumes is one export accepts as the run's. `ckpt`: where a
    renamed value is said (the resume's line); None says nothing."""
    recorded = with_earlier_meanings(with_current_names(ckpt, recorded), current)
    # A record of an earlier version kept sections the stage never reads (the retriever's data.*).
    recorded = without_unread(recorded, current.get("stage.name"))
    # A key this version retired, still in an earlier run's record, is no setting of this run; nor is a key
    # read only before or after training (IGNORED), which an earlier version's record may hold.
    recorded = {
        key: value
        for key, value in recorded.items()
        if (key not in RETIRED_KEYS or key in current) and not ends_with(key, IGNORED)
    }
    if not any(key.endswith(CONTENT) for key in recorded):  # written before data contents were recorded
        current = {key: value for key, value in current.items() if not key.endswith(CONTENT)}
    return recorded, current


def check_resume_settings(ckpt: Path, cfg: DictConfig) -> None:
    """Stop when `ckpt` was written by a run with other settings; warn when only its length or its
    activation checkpointing changed."""
    compared = settings_changes(ckpt, cfg)
    if compared is None:
        log.info("%s predates recorded settings: resumed without comparing them", ckpt)
        return
    changed, recorded, current = compared
    check_data_contents(ckpt, changed, current)
    refused = [key for key in changed if not ends_with(key, WARNED)]
    different = describe(refused, recorded, current)
    if different:
        more = f" and {len(different) - SHOWN} more" if len(different) > SHOWN else ""
        back = earlier_template(refused, recorded) or overrides_back(refused, recorded, current)
        given = f" ({' '.join(back)})" if back else f" ({recorded_overrides(ckpt)})"
        raise ChipadaptError(
            f"{ckpt} was written by a run with other settings ({'; '.join(different[:SHOWN])}{more}); rerun with "
            f"that run's settings{given} to resume it, give this run its own hydra.run.dir, or start over here with "
            "resume=false (its checkpoint is then discarded as training starts)"
        )
    warn_process_change(ckpt, cfg, recorded)
    if changed:
        if any(ends_with(key, ("micro_batch_size",)) for key in changed) and not any(
            ends_with(key, LENGTH) for key in changed
        ):
            effect = (
                "the global batch is unchanged, so the same sequences at every step; their gradients add up in "
                "another order, and rows with different numbers of trained tokens (SFT answers) are weighed by "
                "another per-micro-batch mean"
            )
        elif not any(ends_with(key, LENGTH) for key in changed):
            effect = "the global batch, and so the trajectory, is unchanged"
        elif cfg.optim.get("scheduler"):
            effect = "a scheduled lr is recomputed for the new length, so it jumps at the resumed step"
        else:
            effect = "the lr is constant, so only the end moves"
        log.warning("resuming %s with %s: %s", ckpt, "; ".join(describe(changed, recorded, current)), effect)


def check_data_contents(ckpt: Path, changed: list[str], current: dict) -> None:
    """Stop, naming the source, when a source's path is the same but its content is not (a file
    replaced in place); another path is told with the other changed settings."""
    replaced = [
        key[: -len(CONTENT)]
        for key in changed
        if key.endswith(CONTENT) and key in current and f"{key[: -len(CONTENT)]}.path" not in changed
    ]
    if replaced:
        named = "; ".join(f"{key} ({current.get(f'{key}.path')})" for key in replaced)
        raise ChipadaptError(
            f"{ckpt} was written by a run on other data: {named} changed since; rerun on that data to resume "
            "it, give this run its own hydra.run.dir, or start over here with resume=false (its checkpoint is "
            "then discarded as training starts)"
        )


def recorded_processes(content: dict, recorded: dict) -> int | None:
    """The number of processes that wrote a checkpoint: recorded since PROCESSES_KEY; for an earlier
    checkpoint, what its global batch, micro-batch and accumulation imply; None where unknown."""
    processes = content.get(PROCESSES_KEY)
    if isinstance(processes, int):
        return processes
    global_batch, micro = recorded.get("data.global_batch_size"), recorded.get("data.micro_batch_size")
    accumulation = content.get(ACCUMULATION_KEY)
    if not all(isinstance(n, int) and n > 0 for n in (global_batch, micro, accumulation)):
        return None
    return global_batch // (micro * accumulation) if global_batch % (micro * accumulation) == 0 else None


def warn_process_change(ckpt: Path, cfg: DictConfig, recorded: dict) -> None:
    """Warn, once (global rank 0), when a run resumes on another number of processes than wrote `ckpt`.
    The sampler cuts the data by global batches (data/resume_sampler.py), so every step still trains on
    the same sequences. What differs from an uninterrupted run is the random draws: callbacks/step_seed.py
    seeds each micro-batch by the seed, the step and the micro-batch's place within its process's share
    of the step, not by the rank, so at another process count a sequence sits at another place and gets
    other dropout masks: the resumed run then matches an uninterrupted run on neither process count."""
    from chipadapt.batch_plan import world_size
    from chipadapt.io.lock import is_secondary_rank

    if is_secondary_rank():
        return
    before, now = recorded_processes(checkpoint_metadata(ckpt) or {}, recorded), world_size(cfg.trainer)
    if before is None or before == now:
        return
    log.warning(
        "resuming %s, written by %d process%s, on %d: every step trains on the same sequences (the data is "
        "cut by global batches), but the random draws inside training (dropout masks, and any other draw "
        "per process) differ from those of an uninterrupted run on either number of processes "
        "(callbacks/step_seed.py seeds them by the step and a micro-batch's place within its process's "
        "share, not by the rank); without dropout only the order in which gradients add up differs",
        ckpt,
        before,
        "" if before == 1 else "es",
        now,
    )
