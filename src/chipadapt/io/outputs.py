"""Output folders that never cost a user what they did not ask us to replace.

Every folder a command publishes (a merged model, a trained model, a curated corpus, a tokenizer
build, an index, a report) carries a small hidden marker naming the command that wrote it. Before
any work starts, `check_output_folder` refuses a destination that is an input, holds an input or
lies inside one, or that exists and was not written by the same command; a previous output of the
same command is replaced only when the user says `overwrite=true`. `publish_folder` then writes
to a temporary sibling and swaps it in only when complete, keeping the old folder until then.
"""

import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.creatable import cannot_create, creation_message, place_error
from chipadapt.io.disk_full import disk_full_error

MARKER = ".chipadapt-output.json"
# Folders written before the marker existed are recognised by the manifest they carry.
LEGACY_MARKERS = {"merge": ("merge_manifest.json",), "chipadapt": ("index.faiss",), "reproduce": ("headline.md",)}
log = logging.getLogger(__name__)


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def written_by(folder: Path) -> str | None:
    """The command that published `folder` (its marker), or None for anything else."""
    marker = folder / MARKER
    if marker.is_file():
        try:
            return json.loads(marker.read_text()).get("command")
        except (OSError, ValueError):
            return None
    for command, names in LEGACY_MARKERS.items():
        if any((folder / name).is_file() for name in names):
            return command
    return None


def refuse_overlap_with_inputs(
    dest: str | os.PathLike,
    key: str,
    inputs: Iterable[tuple[str, str | os.PathLike | None]],
    advice: str = "write the output somewhere else",
) -> Path:
    """`dest` resolved, after refusing one that is, holds or lies inside an input: writing there could
    replace or mix into what the command reads. A dataset by name (`hf:...`) is no local path."""
    target = _resolved(dest)
    for input_key, path in inputs:
        if path is None or str(path).startswith("hf:"):
            continue
        source = _resolved(path)
        if target == source:
            raise ChipadaptError(f"{key}: {dest} is {input_key} itself; {advice}")
        if target in source.parents:
            raise ChipadaptError(f"{key}: {dest} holds {input_key} ({path}); {advice}")
        if source in target.parents:
            raise ChipadaptError(f"{key}: {dest} lies inside {input_key} ({path}); {advice}")
    return target


def check_output_folder(
    dest: str | os.PathLike,
    command: str,
    key: str,
    overwrite: bool,
    inputs: Iterable[tuple[str, str | os.PathLike]] = (),
    previous: str = "",
) -> Path:
    """Refuse, before any work, every destination whose replacement could lose something, and one that
    cannot be made where it is named (under a file, in a folder that takes no new entries).

    `inputs` are (config key, path) pairs the command reads; `key` names the output's config key;
    `previous` says what the earlier output is (", completed before with other settings: ..."), told
    where an earlier output of this command is refused."""
    target = refuse_overlap_with_inputs(dest, key, inputs)
    if target.is_file() or target.is_symlink():
        raise ChipadaptError(f"{key}: {dest} exists and is not a folder written by {command}; refusing to replace it")
    if target.is_dir() and any(target.iterdir()):
        owner = written_by(target)
        if owner != command:
            # a folder of another command (export.py output=RUN/model) is named as its marker says
            why = f"{owner} wrote it, as its {MARKER} says" if owner else "no chipadapt marker"
            raise ChipadaptError(
                f"{key}: {dest} exists and is not an output of {command} ({why}); "
                "refusing to replace it: choose another folder"
            )
        if not overwrite:
            raise ChipadaptError(
                f"{key}: {dest} holds a previous {command} output{previous}; overwrite=true replaces it"
            )
    # The output is written into (compare.py) or built beside it and renamed in (publish_folder): both
    # places must take new entries. Checked here, before the work, not at its end.
    for place in (target, target.parent) if target.is_dir() else (target,):
        if reason := cannot_create(place):
            raise ChipadaptError(creation_message(dest, key, reason if place == target else f"{place}: {reason}"))
    return target


def check_output_file(
    dest: str | os.PathLike,
    key: str,
    ours: Callable[[Path], bool],
    inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
) -> Path:
    """Refuse, before any work, a user-named output file that is one of the command's inputs, or that
    exists and is not an earlier output of the same kind (`ours`: a file carries no hidden marker, so
    its own header or fields say who wrote it)."""
    target = _resolved(dest)
    for input_key, path in inputs:
        if path is not None and not str(path).startswith("hf:") and _resolved(path) == target:
            raise ChipadaptError(f"{key}: {dest} is {input_key} itself; write the output somewhere else")
    if target.is_dir():
        raise ChipadaptError(f"{key}: {dest} is a folder; name a file")
    if target.exists() and not ours(target):
        raise ChipadaptError(f"{key}: {dest} exists and was not written by this command; refusing to replace it")
    return target


def first_line(path: Path) -> str:
    """The first line of a text file ('' when unreadable), to recognise a file by its header."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline()
    except (OSError, UnicodeDecodeError):
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):  # no pid this machine can have: not a name of ours, kept
        return True
    return True


# The temporaries this project names beside a destination: `.<name>.<pid>-<host>.<mkstemp's random
# part>.tmp`, `.<name>.<pid>-<host>.old.<random>.tmp` for a folder moved aside: files (io/atomic.py),
# published folders (`publish_folder`) and Lightning checkpoints (io/checkpoint_io.py) alike. The writer's
# pid tells one left by a killed process from one still being written; the host tag keeps a temporary
# that a job on another machine is writing on a shared disk (the same pid numbers there) from being
# judged by a pid of this machine. Names without the tag (a user's `.notes.2024.v1.tmp`, or what an
# older version wrote) are never removed: their writer cannot be told. Folder swaps (io/folder_swap.py)
# are no such temporary: every rank writes the one `.NAME.partial`, whose leftovers the next save removes.
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8})\.(?P<aside>old\.)?[a-z0-9_]+\.tmp$")
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary_prefix(dest: Path, aside: bool = False) -> str:
    """The start of this process's temporary names beside `dest` (mkstemp/mkdtemp add the rest and the
    `.tmp` suffix); `aside`: the folder an output already at `dest` is moved into while it is replaced."""
    return f".{dest.name}.{os.getpid()}-{HOST}.{'old.' if aside else ''}"


def left_by_dead_writer(name: str, dest_name: str | None = None) -> bool:
    """Whether `name` is a temporary that a writer on this machine named (`temporary_prefix`), of the
    destination `dest_name` (None: of any), and that writer is gone. Removing it loses nothing once
    `put_back_interrupted` has run: the one such name that can hold the only copy of an output, the
    folder a published output was moved into (`.old.`) by a writer killed before the new one took its
    place, is then empty or beside its destination again."""
    found = TEMPORARY.match(name)
    if not found or found["host"] != HOST or dest_name not in (None, found["name"]):
        return False
    return not _alive(int(found["pid"]))


def put_back_interrupted(aside: Path) -> bool:
    """A dead writer's `.NAME.<pid>-<host>.old.<random>.tmp` folder, holding the output moved out of `NAME`:
    where `NAME` is missing (the writer was killed between `publish_folder`'s two renames) the output is
    renamed back. False where it is missing and cannot be put back: then nothing of `NAME` may be removed."""
    dest = aside.parent / TEMPORARY.match(aside.name)["name"]
    moved = aside / dest.name
    if dest.exists() or dest.is_symlink() or not (moved.exists() or moved.is_symlink()):
        return True  # replaced (the aside copy is the old one) or never moved (the aside folder is empty)
    try:
        os.rename(moved, dest)  # not os.replace: an output made there meanwhile is not replaced
    except OSError as err:
        log.warning("%s: an interrupted replacement left the output at %s; not put back (%s)", dest, moved, err)
        return False
    log.warning("%s: an interrupted replacement of it was undone (the earlier output is back in place)", dest)
    return True


def _remove_dead(folder: Path, dest_name: str | None) -> list[Path]:
    # os.scandir and a test of the name's start, not Path.iterdir and a regex on every entry: a folder of
    # 20,000 shards is listed in a few milliseconds (benchmarks/atomic_writes.py).
    start = f".{dest_name}." if dest_name is not None else "."
    try:
        with os.scandir(folder) as entries:
            dead = sorted(
                Path(entry.path)
                for entry in entries
                if entry.name.startswith(start)
                and entry.name.endswith(".tmp")
                and left_by_dead_writer(entry.name, dest_name)
            )
    except (FileNotFoundError, NotADirectoryError):
        return []
    # First the output a killed replacement moved aside goes back: removed with the rest, the destination
    # and both its copies (the aside one and the new one, both temporaries) would be gone.
    kept = {
        TEMPORARY.match(path.name)["name"]
        for path in dead
        if TEMPORARY.match(path.name)["aside"] and not put_back_interrupted(path)
    }
    dead = [path for path in dead if TEMPORARY.match(path.name)["name"] not in kept]
    for path in dead:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return dead


# Destinations whose dead writers' temporaries this process has looked for. Once is enough: what this
# process writes it removes itself on failure, and a writer killed later is found by the next process's
# first write or job start. Every write looking again listed the folder each time: in a folder of
# 20,000 files a manifest write took 5 times as long as the write itself (benchmarks/atomic_writes.py).
_looked_for: set[str] = set()


def remove_stale_temporaries(dest: Path) -> list[Path]:
    """Temporary siblings of `dest` (`.<name>.<pid>-<host>.*.tmp`) left by processes of this machine that
    are gone (a killed merge, save or file write); ours by name, so removing them deletes nothing a user
    made. Looked for at this process's first write of `dest`."""
    key = os.path.abspath(dest)
    if key in _looked_for:
        return []
    removed = _remove_dead(dest.parent, dest.name)
    _looked_for.add(key)
    return removed


def remove_every_temporary(dest: Path) -> list[Path]:
    """For a destination only the holder of its run folder's lock writes (io/checkpoint_io.py): every
    temporary file of `dest` but this process's, each removed with one line. Its writer, here or on
    another machine, cannot be alive: a save preempted on one node (SLURM's KillWait after its SIGTERM)
    leaves a full-size `.last.ckpt.<pid>-<host>.<random>.tmp` that the requeued job, on another node,
    may not judge by its pid. Also the untagged `.NAME.<pid>.<random>.tmp` an earlier version wrote.
    Files only: a folder of such a name was made by no writer of `dest`. Looked for once per process."""
    key = os.path.abspath(dest)
    if key in _looked_for:
        return []
    ours = re.compile(rf"^\.{re.escape(dest.name)}\.\d+(?:-[0-9a-f]{{8}})?\.[a-z0-9_]+\.tmp$")
    own = temporary_prefix(dest)
    try:
        with os.scandir(dest.parent) as entries:
            left = sorted(
                Path(entry.path)
                for entry in entries
                if ours.match(entry.name) and not entry.name.startswith(own) and entry.is_file(follow_symlinks=False)
            )
    except (FileNotFoundError, NotADirectoryError):
        left = []
    for path in left:
        path.unlink(missing_ok=True)
        log.info("%s: removed, the temporary of a save that was stopped before it completed", path)
    _looked_for.add(key)
    return left


def remove_dead_temporaries(run_folder: str | os.PathLike) -> list[Path]:
    """Every temporary in `run_folder` (of any destination there) whose writer is gone, as a job starts
    there: a rerun that finds its work done writes nothing that would remove them. Only names this
    machine's writers tag (`left_by_dead_writer`), and none unless the folder's lock is known to be free
    (held: a rank of this run, or a run the lock will refuse; unknown: no lock file, or a filesystem
    without flock): its temporaries may be in use."""
    from chipadapt.io.lock_probe import folder_lock_held

    if folder_lock_held(run_folder) is not False:
        return []
    return _remove_dead(Path(run_folder), None)


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def readable_as_umask_allows(folder: Path) -> None:
    """Give every file and folder under `folder` the read (and, for folders, search) bits the umask
    allows. Writers that go through a private temporary file (safetensors' save, transformers'
    save_pretrained, mkstemp/mkdtemp) leave weights at 0600, which a teammate or a cluster's
    evaluation job running as another user in the same group cannot read; a file made with open()
    here would have had them."""
    umask = current_umask()
    for root, dirs, files in os.walk(folder):
        for name, bits in [(d, 0o555) for d in dirs] + [(f, 0o444) for f in files]:
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                continue
            wanted = stat.S_IMODE(mode) | (bits & ~umask)
            if wanted != stat.S_IMODE(mode):
                os.chmod(path, wanted)


def write_marker(folder: Path, command: str) -> None:
    record = {"command": command, "written": dt.datetime.now().isoformat(timespec="seconds"), "pid": os.getpid()}
    (folder / MARKER).write_text(json.dumps(record) + "\n")


@contextmanager
def publish_folder(dest: str | os.PathLike, command: str, key: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside `dest`; when the block completes it becomes `dest`.

    A folder already at `dest` must carry `command`'s marker (callers check earlier, with the
    user's overwrite choice); it is moved aside, the new one renamed in, and only then removed,
    so a crash at any point leaves one complete copy. On failure the temporary folder goes and an
    output moved aside is put back; a writer killed between the two renames leaves that to the next
    cleanup of its temporaries (`put_back_interrupted`).
    `dest` where no folder can be made is one line naming `key` (the setting that names it)."""
    dest = Path(dest).expanduser()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(dest)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=temporary_prefix(dest), suffix=".tmp"))
    except OSError as err:
        if (refused := place_error(dest, err, key)) is not None:
            raise refused from err
        raise
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700; published, as readable as any folder made here
    kept = False  # the complete new output, refused its place: kept for the user, named in the error
    old = None
    try:
        yield tmp
        readable_as_umask_allows(tmp)
        write_marker(tmp, command)
        if dest.exists():
            if written_by(dest) != command and any(dest.iterdir()):
                kept = True
                # Out of the temporaries' names: the cleanup of a later write or job start would remove it.
                keep = tmp.with_name(tmp.name.removesuffix(".tmp") + ".kept")
                os.replace(tmp, keep)
                raise ChipadaptError(
                    f"{dest}: exists and is not an output of {command}; refusing to replace it "
                    f"(the new output is kept at {keep})"
                )
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=temporary_prefix(dest, aside=True), suffix=".tmp"))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException as err:
        if not kept:  # also a refusal from inside the block (a ChipadaptError): nothing half-made stays
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and put_back_interrupted(old):  # stopped between the renames (a signal's exception)
            shutil.rmtree(old, ignore_errors=True)
        if isinstance(err, ChipadaptError):
            raise
        full = disk_full_error(err)
        if full is not None and not full.filename:  # safetensors' writer names no file: name the output
            raise OSError(full.errno, os.strerror(full.errno), str(dest)) from err
        raise
