"""What a rerun of a train command needs to know first: whether its folder holds this very run, completed,
and where it holds another one, what the user changed since (said beside the refusal to replace it).

Both compare the resolved configs as the run's settings, read as a resume reads them (run_settings: folders
by their config key, so a cache, shared-data or package folder moved to another machine, or the run folder
itself moved, is no change, what matters being its content, which pipeline.finished_before compares by
fingerprint; the sections the stage never reads left out; keys a later chipadapt added read at their
earlier meaning). Validation settings are compared, unlike a
resume's: a completed run is passed as done with the metrics it recorded, which another validation would
not have measured."""

import datetime as dt
import json
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt.io.lock import LOCK_NAME
from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.io.outputs import MARKER, written_by
from chipadapt.manifest import fingerprint_input, git_state, recorded_time
from chipadapt.run_settings import describe, run_settings, version_changes, with_earlier_meanings

# Not a setting of the run: whether it may replace the folder's.
NOT_COMPARED = ("overwrite",)


def settings(config: dict) -> dict[str, object]:
    """A resolved config as dotted keys, as run_settings reads them, without what is not compared."""
    stage = (config.get("stage") or {}).get("name")
    found = run_settings(config, stage, config.get("paths"))
    return {key: value for key, value in found.items() if key not in NOT_COMPARED}


def compared(recorded_config: dict, cfg: DictConfig) -> tuple[dict, dict]:
    """The recorded run's settings and this run's, the keys added since read at their earlier meaning."""
    now = settings(OmegaConf.to_container(cfg, resolve=True))
    return with_earlier_meanings(settings(recorded_config), now), now


def completed_record(cfg: DictConfig, out: Path) -> dict | None:
    """The manifest of a completed train run in `out` with this run's settings and its model/ in place;
    None otherwise, and always with overwrite=true. The caller then compares the inputs."""
    path = out / "manifest.json"
    if cfg.overwrite or not path.is_file() or not (out / "model").is_dir():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if recorded.get("kind") != "train" or recorded.get("status") != "completed":
        return None
    before, now = compared(recorded.get("config") or {}, cfg)
    return recorded if before == now else None


# Stages a rerun of the same command never passes as done (pipeline.RECORDED_STAGES and the stages'
# finished_before hooks pass the others): there "other inputs" would blame a change no one made.
NOT_PASSED = ("retriever", "reranker")

# Changes named in a refusal; more are counted ("and 3 more").
NAMED_CHANGES = 5


def _recorded(out: Path) -> dict | None:
    try:
        recorded = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) and recorded.get("kind") == "train" else None


def _published_at(model: Path) -> dt.datetime | None:
    """When train.py published `model` (its marker's time); None for a folder without that marker."""
    if written_by(model) != "train":
        return None
    try:  # aware: the manifest's `started` it is compared with may be in UTC, and the marker in local time
        return recorded_time(json.loads((model / MARKER).read_text(encoding="utf-8"))["written"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stopped_after_publishing(cfg: DictConfig, out: Path) -> dict | None:
    """The record of the earlier attempt of this very run that published `out/model/` and stopped before
    it recorded itself completed (SIGKILL, a lost node or the OOM killer between the save and the
    manifest's last write: it still says "running"; a SIGTERM or an error there: "interrupted",
    "failed"). None otherwise, and always with overwrite=true (which replaces any earlier model/).

    Its model/ is the run's own: the same settings (compared as for a completed run), published by
    train.py after the attempt that the manifest records started (before that, it is an earlier run's,
    which only overwrite=true replaces), and no live process holds the folder's lock (the attempt is
    gone: a "running" one whose lock nobody holds was killed, as compare.py reads it). A requeue of the
    same command then completes the run, resuming its last checkpoint (finished: no step trained)
    and publishing model/ again, instead of being refused until overwrite=true retrains it all."""
    recorded = _recorded(out)
    if cfg.overwrite or recorded is None or recorded.get("status") == "completed":
        return None
    lock = folder_lock_held(out)
    # A "running" record is told apart from a live run only by the lock; the others recorded their end.
    if lock is True or (recorded.get("status") == "running" and lock is not False):
        return None
    return recorded if _published_by(recorded, cfg, out) else None


def _published_by(recorded: dict, cfg: DictConfig, out: Path) -> bool:
    """Whether `out/model/` is the attempt `recorded`'s own: published by train.py after that attempt
    started, with this run's settings."""
    published, started = _published_at(out / "model"), recorded_time(recorded.get("started"))
    if published is None or started is None or published < started:
        return False
    before, now = compared(recorded.get("config") or {}, cfg)
    return before == now


def untold_stop(cfg: DictConfig, out: Path, recorded: dict) -> str:
    """For the refusal of a stopped attempt's own model/ whose folder lock cannot be probed (its manifest
    still "running"): why nothing tells whether its job still runs, and the way to complete the run that
    trains nothing again, once the user knows no job uses the folder; "" where that is not the case.
    The trial's refusal named only overwrite=true, which trains the finished run again from step 0.
    Not taken as stopped unasked: a live job of this run past its publication (still evaluating, say)
    would then share the folder with the rerun."""
    if recorded.get("status") != "running" or folder_lock_held(out) is not None:
        return ""
    # Without a checkpoint to resume, the rerun would train again anyway, as overwrite=true does.
    if not (out / "checkpoints" / "last.ckpt").exists() or not _published_by(recorded, cfg, out):
        return ""
    lock = out / LOCK_NAME
    if lock.exists():  # its job made the file: this filesystem has no flock to probe it with
        why = "this filesystem has no flock"
        then = f"copy {out} (`cp -a`) to a filesystem with flock and run this command with the copy as its folder"
    else:
        why = f"{out} has no {LOCK_NAME} (a folder copied without it, or written before run folders were locked)"
        then = f"`touch {lock}` and run this command again"
    return (
        f"; whether its job still runs cannot be told: {why}. If no job uses the folder any more, {then}: it "
        "completes the run from checkpoints/last.ckpt and publishes model/ again, instead of training it again"
    )


def what_changed(cfg: DictConfig, out: Path) -> str:
    """Why `out`'s model/ is not this run's, for the refusal to replace it: `, completed before with
    other settings: optim.lr: 5e-05 -> 0.0001` (the settings compared key by key, as a resume names its
    changes), with what of them a change of chipadapt's version explains where the run was made by
    another version (its manifest's commit is not this code's), `, completed before with these settings
    but other inputs` (a data file or the model changed in place), or the earlier run's status where it
    did not complete, with its other settings where it had others (with the same ones, a stopped
    attempt's own model/ is no refusal: stopped_after_publishing; where its lock cannot be probed, the
    way to complete it: untold_stop); "" where the folder records no train
    run. The user who reran with another learning rate then knows what the refusal is about, and that a
    new hydra.run.dir keeps both runs."""
    recorded = _recorded(out)
    if recorded is None:
        return ""
    before, now = compared(recorded.get("config") or {}, cfg)
    keys = [key for key in dict.fromkeys([*before, *now]) if before.get(key) != now.get(key)]
    if recorded.get("status") != "completed":
        status = f" (its run's status: {recorded.get('status')})"
        return (
            f"{status}, with other settings: {_changes(keys, before, now, recorded)}"
            if keys
            else status + untold_stop(cfg, out, recorded)
        )
    stage = OmegaConf.select(cfg, "stage.name")
    if not keys and stage in NOT_PASSED:
        return (
            f", completed before with these settings; a stage={stage} run is not passed as done (it reads "
            "inputs not all recorded by content): overwrite=true trains it again, a new hydra.run.dir keeps both"
        )
    if not keys:
        return ", completed before with these settings but other inputs (a data source or the model changed since)"
    return f", completed before with other settings: {_changes(keys, before, now, recorded)}"


def made_by_another_version(recorded: dict) -> bool:
    """Whether the run `recorded` (its manifest) was made by other code than this: its recorded commit is
    not this checkout's. Where neither knows its commit (an install without git), or the manifest records
    none (one written by hand), nothing tells."""
    if not isinstance(recorded.get("git"), dict):
        return False
    then = recorded["git"].get("commit")
    now = git_state().get("commit")
    return then != now and (then is not None or now is not None)


def _changes(keys: list[str], before: dict, now: dict, recorded: dict) -> str:
    """`optim.lr: 5e-05 -> 0.0001; ...`, the first NAMED_CHANGES of `keys`, and, where another chipadapt
    version made the run, what of them that version change explains (a key only one side has is else the
    user's own change: `optim=`, `model=` or `tokenizer=` switched, a data source added)."""
    changes = describe(keys, before, now)
    more = f" and {len(changes) - NAMED_CHANGES} more" if len(changes) > NAMED_CHANGES else ""
    by = ""
    if made_by_another_version(recorded):
        # As the earlier run wrote its settings, without the keys added since read at their earlier meaning.
        written = settings(recorded.get("config") or {})
        own = [key for key in keys if not key.startswith("stage.")]  # copies under stage.* are named by their key
        how = version_changes(own, written, now)
        said = {"retired": "no longer a setting", "added": "added since", "renamed": "renamed in this version"}
        version = "; ".join(f"{', '.join(how[kind])} {said[kind]}" for kind in said if how[kind])
        by = f" (the run was made by another chipadapt version{': ' + version if version else ''})"
    return f"{'; '.join(changes[:NAMED_CHANGES])}{more}{by}"


def same_inputs(cfg: DictConfig, recorded: dict) -> bool:
    """Whether the inputs a run's manifest `recorded` are this run's by content: each data source and the model
    the config names now, as they resolve now, and every input recorded (pipeline.finished_before; the overwrite
    continuation whose publish a kill cut short, stages/resume_decision.py). With an augmented tokenizer the run
    started from the build the current inputs key to (`DomainTokenizer.build_folder`: the base model's files,
    the corpus and the settings), as recorded; the base model is compared through that key."""
    inputs = recorded.get("inputs") or {}
    named = [
        (f"data.{section}.{name}", source.path)
        for section in ("sources", "val_sources")
        for name, source in (cfg.data.get(section) or {}).items()
        if source and source.get("path")
    ]
    from chipadapt.models.hf_folder import resolve_model_folder

    build_folder = getattr(instantiate(cfg.tokenizer.adapt), "build_folder", None)
    if build_folder is not None:  # tokenizer=augmented: the recorded model is the build
        model = inputs.get("model")
        if not isinstance(model, dict) or str(build_folder(resolve_model_folder(cfg.model)).resolve()) != model.get(
            "path"
        ):
            return False
    elif cfg.model.get("path"):
        named.append(("model", cfg.model.path))
    for key, current in named:  # what the config names now, as it resolves now
        record = inputs.get(key)
        if not isinstance(record, dict) or fingerprint_input(current)["fingerprint"] != record.get("fingerprint"):
            return False
    for record in inputs.values():
        # add_input's records ({path, fingerprint, files}); other entries of the section are descriptive
        if isinstance(record, dict) and {"path", "fingerprint"} <= record.keys():
            if fingerprint_input(record["path"])["fingerprint"] != record["fingerprint"]:
                return False
    return True
