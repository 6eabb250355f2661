"""What a rerun of a train command needs to know first: whether its folder holds this very run, completed,
and where it holds another one, what the user changed since (said beside the refusal to replace it).

Both compare the resolved configs as the run's settings, not as text: a folder is named by its config key
(`${paths.cache_dir}`, the installed package's resources), so a cache, shared-data or package folder moved
to another machine, or the run folder itself moved, is no change (what matters is its content, which
pipeline.finished_before compares by fingerprint); a key a later chipadapt added reads, in an earlier run's
record, at its earlier meaning (resume_settings.ADDED_KEYS); a section the stage never reads (`data.*` for the
retriever and reranker, which train on passages) is left out. Validation settings are compared, unlike a
resume's: a completed run is passed as done with the metrics it recorded, which another validation would
not have measured."""

import datetime as dt
import json
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.io.dotted_keys import flatten
from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.io.outputs import MARKER, written_by

# Sections of the config a stage never reads: a change there is no change of its run.
NOT_READ = {"retriever": ("data",), "reranker": ("data",)}
# Not a setting of the run: whether it may replace the folder's.
NOT_COMPARED = ("overwrite",)
# The installed package's resources folder, wherever it was installed (a run of another checkout or release).
PACKAGE_RESOURCES = re.compile(r"\S*?/chipadapt/resources(?=/|$)")


def settings(config: dict) -> dict[str, object]:
    """A resolved config as dotted keys, folders named by their config key, without what is not compared."""
    folders = [(str(value), f"${{paths.{key}}}") for key, value in (config.get("paths") or {}).items() if value]
    folders.sort(key=lambda item: -len(item[0]))  # a folder inside another is named by its own key
    unread = NOT_READ.get(str((config.get("stage") or {}).get("name")), ())
    found = {}
    for key, value in flatten(config):
        if key in NOT_COMPARED or key.split(".")[0] in unread:
            continue
        if isinstance(value, str):
            for folder, name in folders:
                value = value.replace(folder, name)
            value = PACKAGE_RESOURCES.sub("${chipadapt_resource:}", value)
        found[key] = value
    return found


def compared(recorded_config: dict, cfg: DictConfig) -> tuple[dict, dict]:
    """The recorded run's settings and this run's, the keys added since read at their earlier meaning."""
    from chipadapt.stages.resume_settings import with_earlier_meanings

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
    try:
        return dt.datetime.fromisoformat(json.loads((model / MARKER).read_text(encoding="utf-8"))["written"])
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
    published = _published_at(out / "model")
    try:
        started = dt.datetime.fromisoformat(str(recorded.get("started")))
    except ValueError:
        return None
    if published is None or published < started:
        return None
    before, now = compared(recorded.get("config") or {}, cfg)
    return recorded if before == now else None


def what_changed(cfg: DictConfig, out: Path) -> str:
    """Why `out`'s model/ is not this run's, for the refusal to replace it: `, completed before with
    other settings: optim.lr: 5e-05 -> 0.0001` (the settings compared key by key, as a resume names its
    changes), with the keys one version has and the other not named as such (a run of an earlier
    release), `, completed before with these settings but other inputs` (a data file or the model changed
    in place), or the earlier run's status where it did not complete, with its other settings where it
    had others (with the same ones, a stopped attempt's own model/ is no refusal: stopped_after_publishing);
    "" where the folder records no train run. The user who reran with another learning rate then knows
    what the refusal is about, and that a new hydra.run.dir keeps both runs."""
    recorded = _recorded(out)
    if recorded is None:
        return ""
    before, now = compared(recorded.get("config") or {}, cfg)
    keys = [key for key in dict.fromkeys([*before, *now]) if before.get(key) != now.get(key)]
    if recorded.get("status") != "completed":
        status = f" (its run's status: {recorded.get('status')})"
        return f"{status}, with other settings: {_changes(keys, before, now)}" if keys else status
    if not keys:
        return ", completed before with these settings but other inputs (a data source or the model changed since)"
    return f", completed before with other settings: {_changes(keys, before, now)}"


def _changes(keys: list[str], before: dict, now: dict) -> str:
    """`optim.lr: 5e-05 -> 0.0001; ...`, the first NAMED_CHANGES of `keys`, and what of them a change of
    chipadapt's version explains."""
    from chipadapt.stages.resume_settings import RENAMED_VALUES, describe

    changes = describe(keys, before, now)
    more = f" and {len(changes) - NAMED_CHANGES} more" if len(changes) > NAMED_CHANGES else ""
    # A key only one side has is a change of chipadapt's version, not of the user's command (copies under
    # stage.* are named by the key they copy).
    gone = [key for key in keys if key not in now and not key.startswith("stage.")]
    new = [key for key in keys if key not in before and not key.startswith("stage.")]
    renamed = [
        key for key in keys if not key.startswith("stage.") and RENAMED_VALUES.get(str(before.get(key))) == now.get(key)
    ]
    version = "; ".join(
        part
        for part in (
            f"{', '.join(gone)} no longer a setting" if gone else "",
            f"{', '.join(new)} added since" if new else "",
            f"{', '.join(renamed)} renamed in this version" if renamed else "",
        )
        if part
    )
    by = f" (the run was made by another chipadapt version: {version})" if version else ""
    return f"{'; '.join(changes[:NAMED_CHANGES])}{more}{by}"
