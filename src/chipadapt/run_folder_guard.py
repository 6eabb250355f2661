"""A Hydra callback that keeps one command's run folder from being taken over by another.

Hydra writes `.hydra/` (config, overrides) into `hydra.run.dir` before our code runs, and the command
then writes its own `manifest.json` and results there. `evaluate.py ... hydra.run.dir=<a train run>`
would so replace the training run's records, which compare.py and reproduce.py read. A folder of no
run at all (a user's project folder, `out=~/work`) is refused as well: the command would write its
`model/`, `checkpoints/` and the like among the user's files, and reproduce.py would move a subfolder
that happens to bear a step's name to `.stale/`. The check runs at `on_run_start`, before Hydra writes
anything; a rerun of the same command (a resume) passes, and so does a folder holding only hidden
entries (what a killed save leaves: its `.<name>.<pid>.*.tmp` staging folder).

Hydra also rewrites a run's `.hydra/` records, and a sweep's `multirun.yaml`, before any of our code
runs in the job; an attempt refused before it recorded anything puts back what the folder's earlier
run had there (`restore_records_after_refusal`), so the records keep describing the model they sit
beside."""

import json
import os
import sys
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from chipadapt.io.creatable import cannot_create, creation_message
from chipadapt.io.outputs import remove_dead_temporaries
from chipadapt.sweep_job_folders import differences, drawn_jobs_share, job_folders, job_outputs, shared_folder

# An entry point's config name -> the `kind` its manifest records; compare and curate write no manifest,
# and are known by the job name Hydra records in `.hydra/hydra.yaml` (our job name is the config name).
KINDS = {
    "train": "train",
    "evaluate": "evaluate",
    "merge": "merge",
    "chat": "chat",
    "reproduce": "reproduce",
    "compare": "compare",
    "curate": "curate",
    "export": "export",
}


def run_kind(folder: Path) -> str | None:
    """The command whose run `folder` holds: its manifest's kind, else the job Hydra recorded there;
    None where neither is one of ours."""
    try:
        kind = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind in KINDS.values():
        return kind
    try:
        recorded = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text(encoding="utf-8"))
        name = recorded["hydra"]["job"]["name"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return KINDS.get(name)


def foreign_kind(folder: Path, config_name: str | None) -> str | None:
    """The kind of the run recorded in `folder` when it is not this command's, else None."""
    kind = run_kind(folder)
    return kind if kind and kind != KINDS.get(config_name or "") else None


def not_a_run(folder: Path) -> bool:
    """`folder` holds visible files but no run's records (neither our manifest.json nor Hydra's .hydra/).
    Log files do not count: Hydra creates `<job>.log` just before `.hydra/`, and a second process
    started into the same folder (a rank of a distributed run) may look in between."""
    if not folder.is_dir() or run_kind(folder) or (folder / ".hydra").is_dir():
        return False
    return any(not entry.name.startswith(".") and entry.suffix != ".log" for entry in folder.iterdir())


def input_paths(config: DictConfig) -> list[tuple[str, str]]:
    """(config key, path) of the local folders and files a command reads that a run folder could be put
    into by mistake: models, training sources, curation inputs."""
    found = []

    def add(key: str) -> None:
        try:
            value = OmegaConf.select(config, key, throw_on_missing=False)
        except Exception:  # noqa: BLE001 (an interpolation that needs the job: that command checks it later)
            return
        if isinstance(value, str) and value and not value.startswith("hf:"):
            found.append((key, value))

    for key in ("model.path", "models.chip", "models.instruct", "models.base"):
        add(key)
    for section in ("sources", "val_sources"):
        sources = OmegaConf.select(config, f"data.{section}", throw_on_missing=False)
        if isinstance(sources, DictConfig):
            for name, spec in sources.items():
                if isinstance(spec, DictConfig):
                    add(f"data.{section}.{name}.path")
    inputs = OmegaConf.select(config, "data.curate.inputs", throw_on_missing=False)
    for index in range(len(inputs) if OmegaConf.is_list(inputs) else 0):
        add(f"data.curate.inputs[{index}]")
    from chipadapt.config_job_checks import passage_source_paths  # the docs folders of retrieval

    return found + passage_source_paths(config)


def inside_an_input(folder: Path, config: DictConfig) -> tuple[str, str, str] | None:
    """(key, path, "is" or "lies inside") of the input that `folder` is or lies inside, if any: the run
    would write its .hydra/, log and outputs among a user's model or data. Links are followed, as the
    writes would follow them: a link to the model folder is the model folder."""
    real = folder.resolve()
    for key, path in input_paths(config):
        source = _absolute(path).resolve()
        if source.is_dir() and (real == source or source in real.parents):
            return key, path, "is" if real == source else "lies inside"
    return None


def _linked(folder: Path) -> str:
    """` (a link to <where it leads>)` for a folder reached through a link, else ''."""
    real = folder.resolve()
    return f" (a link to {real})" if real != folder else ""


# Run folders' records as they were before Hydra rewrote them for this attempt: {folder: {name: bytes}}.
_BEFORE: dict[Path, dict[str, bytes | None]] = {}
HYDRA_RECORDS = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")
MANIFEST = "manifest.json"
# What a job writes once it has recorded itself in its folder: the manifest of the commands that keep
# one, and, for the two that keep none, what they publish last (curation's report, in the same rename as
# its shards; compare's table). One that changed means the attempt did record itself: its .hydra/ stays.
OWN_RECORDS = (MANIFEST, "corpus/curation_report.json", "compare.csv")
RECORDS = (*OWN_RECORDS, *HYDRA_RECORDS)
# The sweep this process runs, known in the sweeper's process (the basic launcher runs its jobs there):
# its multirun.yaml before the sweeper replaced it, and each job folder's OWN_RECORDS as its job started.
_SWEEP: dict[str, Path | bytes | None] = {}
_JOBS: dict[Path, tuple[bytes | None, ...]] = {}


def remember_records(folder: Path) -> None:
    """Kept before Hydra writes `.hydra/` for this attempt (a run's, or each job's of a sweep that exists
    when the sweep starts), and after each job of a sweep, so that an attempt refused before it recorded
    anything (other settings into a finished run's folder) can put the earlier run's records back."""
    # Any run's records, not only a manifest's: curate and compare keep none, and their .hydra/ is all
    # that says which inputs and settings the corpus or tables beside it came from.
    if any((folder / name).is_file() for name in RECORDS):
        _BEFORE[folder] = {name: _read(folder / name) for name in RECORDS}


def _own_records(folder: Path) -> tuple[bytes | None, ...]:
    return tuple(_read(folder / name) for name in OWN_RECORDS)


def restore_records_after_refusal() -> None:
    """After a user error in the current job: when its folder's OWN_RECORDS are as they were (the attempt
    was refused before its job was recorded), `.hydra/` describes the earlier run again, not the refused
    settings; a record the earlier run did not have is removed (Hydra wrote it for this attempt). In a
    sweep none of whose jobs recorded itself, `multirun.yaml` is put back as well: it describes the
    jobs in the folder, not the settings of a sweep that ran none of them."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    folder = _absolute(HydraConfig.get().runtime.output_dir)
    before = _BEFORE.pop(folder, None)
    if before is not None and _own_records(folder) == tuple(before[name] for name in OWN_RECORDS):
        _put_back(folder, before)  # else a new folder, or this attempt recorded itself: its .hydra/ is right
    sweep, multirun = _SWEEP.get("folder"), _SWEEP.get("multirun")
    if isinstance(multirun, bytes) and sweep == _sweep_of(HydraConfig.get()) and not _a_job_recorded_itself():
        _put_back(sweep, {"multirun.yaml": multirun})


def _sweep_of(hydra) -> Path | None:
    """The sweep folder of the running job; None outside a sweep."""
    from hydra.types import RunMode

    return _absolute(hydra.sweep.dir) if hydra.mode == RunMode.MULTIRUN else None


def _a_job_recorded_itself() -> bool:
    """Whether a job of this sweep wrote its manifest (trained, or failed while doing so); the jobs that
    passed as completed before and the one refused left theirs as they were."""
    return any(_own_records(folder) != records for folder, records in _JOBS.items())


def _put_back(folder: Path, records: dict[str, bytes | None]) -> None:
    from chipadapt.io.atomic import atomic_file

    for name, content in records.items():
        if content is None:
            (folder / name).unlink(missing_ok=True)
        elif _read(folder / name) != content:
            with atomic_file(folder / name) as tmp:
                tmp.write_bytes(content)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def refuse(message: str) -> None:
    print(f"chipadapt: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def sweep_kind(folder: Path) -> str | None:
    """The command whose sweep `folder` holds, by the job name in the `multirun.yaml` Hydra writes there."""
    try:
        recorded = yaml.safe_load((folder / "multirun.yaml").read_text(encoding="utf-8"))
        return KINDS.get(recorded["hydra"]["job"]["name"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def _command(config: DictConfig, config_name: str | None) -> str:
    # A config picked with --config-name is still its script's command: Hydra names the job after it.
    return config_name if config_name in KINDS else str(config.hydra.job.name or config_name)


def _absolute(path) -> Path:
    return Path(os.path.abspath(Path(str(path)).expanduser()))  # `new/../old` is old


def check_job_folders(config: DictConfig, sweep: Path) -> list[Path]:
    """Refuse a sweep two of whose jobs would write into one folder (a `hydra.sweep.subdir` named after
    what they share): the second would find the first one's model, and its refusal would come after the
    first job's work. Returns the job folders, where the sweeper lists them beforehand."""
    folders = job_folders(config, sweep)
    if folders is None:
        return []
    shared = shared_folder(folders)
    if shared:
        first, second, folder = shared
        a, b = differences(folders[first][0], folders[second][0])
        refuse(
            f"hydra.sweep.subdir: jobs #{first} ({a}) and #{second} ({b}) would both write into {folder}; "
            "name the subdir after what the jobs differ in (${hydra.job.override_dirname}), or leave it "
            "at ${hydra.job.num}"
        )
    return [folder for _, folder in folders]


# Settings that name where a job writes outside its run folder, when set: merge.py's, export.py's and
# compare.py's `output`, the annotate stage's and the retrieval task's files. Shared on purpose, and not
# checked: caches (`tokenizer.adapt.cache_dir`, `index_dir`), whose entries are named by their content,
# and reproduce.py's `out`, where jobs that run other steps (`only=[a],[b]`) add to one reproduction.
OUTPUT_KEYS = ("output", "annotate.output", "eval.retrieval.misses_file")


def check_job_outputs(config: DictConfig, sweep: Path) -> None:
    """Refuse a sweep two of whose jobs would write one output (`output=models/merged` over a list of
    lambdas): the later job would replace the earlier one's model, whose record then describes another
    model; without overwrite=true, the later job would fail after its work."""
    for key in OUTPUT_KEYS:
        outputs = job_outputs(config, sweep, key)
        if outputs:
            shared = shared_folder(outputs)
            if shared:
                first, second, path = shared
                a, b = differences(outputs[first][0], outputs[second][0])
                refuse(
                    f"{key}: jobs #{first} ({a}) and #{second} ({b}) would both write into {path}, the later "
                    f"replacing the earlier's output; {way_out(key, 'job')}: '{key}={per_job(path, a)}'"
                )
        elif outputs is None and (path := drawn_jobs_share(config, key)):
            refuse(
                f"{key}: every trial of this search would write into {path}, each replacing the one before; "
                f"{way_out(key, 'trial')}: '{key}={per_job(Path(path), '')}'"
            )


def way_out(key: str, job: str) -> str:
    # Each key's default is the job's own: its folder, or its checkpoint's (export.py's RUN/exports/step-N).
    return f"leave {key} unset so that each {job} writes its own, or make it differ per {job}"


def per_job(path: Path, difference: str) -> str:
    """`path` made to differ per job: named after the first swept setting the jobs differ in (a value,
    not a config group), else after the job's number."""
    swept = difference.split(",", 1)[0].split("=", 1)[0].lstrip("+~")
    tag = f"${{{swept}}}" if "." in swept else "${hydra:job.num}"
    return str(path.with_name(f"{path.stem}_{tag}{path.suffix}"))


class RunFolderGuard(Callback):
    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs) -> None:
        """A sweep's jobs write into `hydra.sweep.dir/<subdir>` with no `on_run_start`, and Hydra writes
        each job's .hydra/ before any job code runs: the whole sweep folder is checked here, before the
        sweeper writes its multirun.yaml."""
        sweep, command = _absolute(config.hydra.sweep.dir), _command(config, config_name)
        if command in KINDS and (holder := inside_an_input(sweep, config)):
            key, path, where = holder
            refuse(f"hydra.sweep.dir: {sweep}{_linked(sweep)} {where} {key} ({path}); write the sweep somewhere else")
        if command not in KINDS:
            return
        jobs = check_job_folders(config, sweep)
        check_job_outputs(config, sweep)
        for folder in [sweep, *jobs]:  # before Hydra's mkdir, which would fail as a traceback
            if reason := cannot_create(folder):
                refuse(creation_message(folder, "hydra.sweep.dir", reason))
        _SWEEP.update(folder=sweep, multirun=_read(sweep / "multirun.yaml"))
        _JOBS.clear()
        for folder in jobs:  # nested subdirs too, which the listing below does not reach
            remember_records(folder)
        if not sweep.is_dir():
            return
        recorded = sweep_kind(sweep)
        if recorded and recorded != command:
            refuse(
                f"hydra.sweep.dir: {sweep} holds a {recorded} sweep; {command} would replace its records: "
                "choose another folder"
            )
        numbered_jobs = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir") == "${hydra.job.num}"
        visible = [entry for entry in sorted(sweep.iterdir()) if not entry.name.startswith(".")]
        for entry in visible:
            kind = foreign_kind(entry, command) if entry.is_dir() else None
            if kind:
                refuse(
                    f"hydra.sweep.dir: {entry} holds a {kind} run; {command} would replace its records "
                    "(.hydra/, manifest.json): choose another folder"
                )
            if entry.is_dir():
                remember_records(entry)
            # Job folders are known by name only for the usual numbered ones; another `hydra.sweep.subdir`
            # (nested, named by overrides) leaves the folders that are jobs to each job's own checks.
            if entry.is_dir() and entry.name.isdigit() and numbered_jobs and not_a_run(entry):
                refuse(
                    f"hydra.sweep.dir: {entry} holds files of no chipadapt run; a job of this sweep would write "
                    "its own among them: choose a new or empty folder"
                )
        if visible and recorded is None and not any(entry.is_dir() and run_kind(entry) for entry in visible):
            refuse(
                f"hydra.sweep.dir: {sweep} exists and holds files of no chipadapt sweep (no multirun.yaml); "
                f"{command} would write its jobs and records among them: choose a new or empty folder"
            )

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        remove_dead_temporaries(_absolute(config.hydra.runtime.output_dir))  # what writes killed outright left
        if _SWEEP:  # a job of the sweep this process started: its manifest before the job runs
            folder = _absolute(config.hydra.runtime.output_dir)
            _JOBS.setdefault(folder, _own_records(folder))

    def on_job_end(self, config: DictConfig, job_return=None, **kwargs) -> None:
        # What a job left is what a later job of the sweep refused in the same folder (a sweeper that
        # draws its jobs as it goes can send two there) puts back.
        if _SWEEP:
            remember_records(_absolute(config.hydra.runtime.output_dir))

    def on_run_start(self, config: DictConfig, config_name: str | None = None, **kwargs) -> None:
        _SWEEP.clear()  # a sweep run earlier in this process (a notebook) is none of this run's business
        _JOBS.clear()
        folder = _absolute(config.hydra.run.dir)
        config_name = _command(config, config_name)
        key = "out" if config_name == "reproduce" else "hydra.run.dir"  # reproduce's run folder is ${out}
        if config_name in KINDS and (holder := inside_an_input(folder, config)):
            input_key, path, where = holder
            refuse(f"{key}: {folder}{_linked(folder)} {where} {input_key} ({path}); write the run somewhere else")
        remember_records(folder)
        kind = foreign_kind(folder, config_name)
        if kind:
            refuse(
                f"{key}: {folder} holds a {kind} run; {config_name} would replace its records "
                "(.hydra/, manifest.json): choose another folder"
            )
        if config_name in KINDS and not_a_run(folder):
            refuse(
                f"{key}: {folder} exists and holds files of no chipadapt run (no manifest.json, no .hydra/); "
                f"{config_name} would write its own among them: choose a new or empty folder (a run folder "
                "copied from elsewhere needs its .hydra/ and manifest.json)"
            )
        # Last: Hydra's mkdir of the folder and its first writes there (the log, .hydra/) come next, and
        # would fail as a traceback.
        if reason := cannot_create(folder):
            refuse(creation_message(folder, key, reason))
