"""Single-file atomic writes (io/atomic.py) name their temporary with the writer's pid, ending in .tmp,
as folder and checkpoint writes do: what a killed writer left (a SIGKILL between the write and the
rename) goes at the next write of the same file, or as the next job starts in the run folder, while a
live writer's temporary and a user's file stay. The kill trial found `.manifest.json.<random>.tmp` and
`.results.csv.<random>.tmp` kept after successful reruns, their names telling nothing of their writer."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from chipadapt.io import outputs
from chipadapt.io.atomic import atomic_directory, atomic_file, write_text_atomic
from chipadapt.io.checkpoint_io import SameFolderCheckpointIO
from chipadapt.io.lock import run_folder_lock
from chipadapt.io.outputs import HOST, remove_dead_temporaries
from chipadapt.run_folder_guard import RunFolderGuard

# Each dies at its rename (os.replace below), its temporary complete.
KILLED_WRITES = {
    "write_text_atomic": "atomic.write_text_atomic(path, 'half')",
    "atomic_file": "with atomic.atomic_file(path) as tmp:\n    tmp.write_text('half')",
    "atomic_directory": "with atomic.atomic_directory(path, 'train') as tmp:\n    (tmp / 'w').write_text('half')",
    "checkpoint": "from chipadapt.io.checkpoint_io import SameFolderCheckpointIO as IO\n"
    "IO().save_checkpoint({'step': 1}, path)",
}


def killed_writer(path: Path, how: str = "write_text_atomic", host: str | None = None) -> list[Path]:
    """Run a writer of `path` in another process that dies (as under SIGKILL: no cleanup runs) between its
    write and its rename; the temporaries it left. `host`: the writer's machine's name, for a machine that
    shares the disk (its pid, gone here, tells nothing of the writer there)."""
    script = "\n".join(
        [
            "import os, sys, socket",
            f"socket.gethostname = lambda: {host!r}" if host else "",
            "from pathlib import Path",
            "from chipadapt.io import atomic",
            "os.replace = lambda *a: os._exit(9)",
            "path = Path(sys.argv[1])",
            KILLED_WRITES[how],
        ]
    )
    before = set(path.parent.iterdir()) if path.parent.is_dir() else set()
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    return sorted(set(path.parent.iterdir()) - before)


def write_again(path: Path, how: str) -> None:
    """The next write of `path` in this process, by the writer `how` names, completed."""
    if how == "atomic_directory":
        with atomic_directory(path, "train") as tmp:
            (tmp / "w").write_text("whole")
    elif how == "checkpoint":
        SameFolderCheckpointIO().save_checkpoint({"step": 2}, path)
    elif how == "atomic_file":
        with atomic_file(path) as tmp:
            tmp.write_text("whole")
    else:
        write_text_atomic(path, "whole")


def test_a_killed_write_leaves_a_temporary_named_by_its_pid_that_the_next_write_removes(tmp_path):
    manifest = tmp_path / "run" / "manifest.json"
    left = killed_writer(manifest)
    assert len(left) == 1 and left[0].name.startswith(".manifest.json.") and left[0].name.endswith(".tmp")
    assert left[0].name.split(".")[3].split("-")[0].isdigit()  # the writer's pid
    write_text_atomic(manifest, "whole\n")
    assert manifest.read_text() == "whole\n"
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["manifest.json"]


def test_atomic_file_temporaries_end_in_tmp_and_go_at_the_next_write(tmp_path):
    plot = tmp_path / "sweep" / "plot.png"
    left = killed_writer(plot, "atomic_file")
    assert len(left) == 1 and left[0].suffix == ".tmp"
    with atomic_file(plot) as tmp:
        assert tmp.suffix == ".tmp" and f".{os.getpid()}-{HOST}." in tmp.name
        tmp.write_bytes(b"png")
    assert sorted(p.name for p in plot.parent.iterdir()) == ["plot.png"]


def test_a_live_writer_another_machine_and_a_user_keep_their_files(tmp_path):
    results = tmp_path / "results.csv"
    live = tmp_path / f".results.csv.{os.getpid()}-{HOST}.abcd1234.tmp"  # this process: alive
    elsewhere = tmp_path / f".results.csv.{dead_pid()}-{'0' * 8 if HOST != '0' * 8 else '1' * 8}.abcd1234.tmp"
    users = [tmp_path / ".results.csv.1.tmp", tmp_path / ".results.csv.backup.tmp", tmp_path / "results.csv.tmp"]
    for path in [live, elsewhere, *users]:
        path.write_text("keep")
    other_file = tmp_path / f".metrics.csv.{dead_pid()}-{HOST}.abcd1234.tmp"  # another destination's
    other_file.write_text("left")
    write_text_atomic(results, "a,b\n")
    assert all(path.read_text() == "keep" for path in [live, elsewhere, *users])
    assert other_file.exists()  # not this write's business; the run folder's start removes it (below)


def test_the_run_folder_start_removes_what_killed_writes_left_unless_the_folder_is_held(tmp_path):
    run = tmp_path / "run"
    left = killed_writer(run / "manifest.json") + killed_writer(run / "results.csv", "atomic_file")
    live = run / f".manifest.json.{os.getpid()}-{HOST}.abcd1234.tmp"
    live.write_text("being written")
    user = run / ".notes.1.tmp"
    user.write_text("mine")
    with run_folder_lock(run):  # a run in the folder now: nothing of it is touched
        assert remove_dead_temporaries(run) == []
    # A rerun that finds its work done writes nothing: the job's start (Hydra's on_job_start) cleans.
    RunFolderGuard().on_job_start(OmegaConf.create({"hydra": {"runtime": {"output_dir": str(run)}}}))
    assert not any(path.exists() for path in left)
    assert live.exists() and user.read_text() == "mine"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_job_start_keeps_a_users_hidden_files_shaped_like_temporaries(tmp_path):
    """The review found the job start's cleanup removing a user's `.backup.20241107.v1.tmp/` (and its files)
    in a run folder: any `.<x>.<digits>.<word>.tmp` read as a temporary of a dead pid. It now takes only names
    this machine's writers tag; it stops on no pid this machine can have, and does nothing where the folder's
    lock cannot be told free."""
    run = tmp_path / "run"
    left = killed_writer(run / "manifest.json")
    backup = run / ".backup.20241107.v1.tmp"
    backup.mkdir()
    (backup / "notes.txt").write_text("mine")
    odd = run / ".x.99999999999999999999.a.tmp"  # no pid at all: os.kill raised OverflowError
    odd.write_text("mine")
    assert remove_dead_temporaries(run) == []  # no lock file: whether a run holds the folder is unknown
    with run_folder_lock(run):
        pass  # a run was here and ended: its lock is free
    assert remove_dead_temporaries(run) == left
    assert (backup / "notes.txt").read_text() == "mine" and odd.read_text() == "mine"


WRITERS = ["write_text_atomic", "atomic_file", "atomic_directory", "checkpoint"]


@pytest.mark.parametrize("how", WRITERS)
def test_every_writers_temporary_is_named_by_its_pid_and_machine_and_goes_at_the_next_write(tmp_path, how):
    """Folder and checkpoint temporaries were named `.<name>.<pid>.<random>.tmp`, without the machine."""
    dest = tmp_path / "run" / ("model" if how == "atomic_directory" else "last.ckpt")
    left = killed_writer(dest, how)
    assert len(left) == 1 and left[0].name.startswith(f".{dest.name}.") and f"-{HOST}." in left[0].name
    write_again(dest, how)
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


@pytest.mark.parametrize("how", [how for how in WRITERS if how != "checkpoint"])  # its own rule: below
def test_a_temporary_another_machine_is_writing_is_kept(tmp_path, how):
    """On a disk two nodes share, a writer on the other node has a pid that is no process here: a folder
    or checkpoint temporary (no machine in its name) was taken for a dead writer's and removed under it."""
    dest = tmp_path / "shared" / ("model" if how == "atomic_directory" else "last.ckpt")
    elsewhere = killed_writer(dest, how, host="another-node")  # its pid is gone here: alive there, for all we know
    assert len(elsewhere) == 1
    write_again(dest, how)
    assert elsewhere[0].exists()


@pytest.mark.parametrize("how", WRITERS)
def test_a_hidden_name_without_the_machine_tag_is_never_removed(tmp_path, how):
    """A user's `.<name>.<digits>.<word>.tmp`, or an older version's temporary: its writer cannot be told."""
    dest = tmp_path / ("model" if how == "atomic_directory" else "results.csv")
    backup = tmp_path / f".{dest.name}.{dead_pid()}.v1.tmp"
    backup.mkdir()
    (backup / "notes.txt").write_text("mine")
    write_again(dest, how)
    assert (backup / "notes.txt").read_text() == "mine"


def test_a_process_looks_through_a_folder_once_per_destination(tmp_path, monkeypatch):
    """Every write listed its whole folder: in a folder of 20,000 files a manifest write took five times as
    long (benchmarks/atomic_writes.py). Dead writers' temporaries are looked for at a destination's first
    write in a process: its later writes leave none behind."""
    listed = []
    real = os.scandir
    monkeypatch.setattr(outputs.os, "scandir", lambda folder: listed.append(folder) or real(folder))
    for _ in range(3):
        write_text_atomic(tmp_path / "manifest.json", "{}")
    write_text_atomic(tmp_path / "metrics.csv", "a\n")
    assert listed == [tmp_path, tmp_path]


def test_a_new_output_kept_beside_a_folder_it_may_not_replace_outlives_its_writer(tmp_path):
    """A publish refused at its end (the user made the destination meanwhile) keeps the new output and names
    it in the error; under its temporary's name, the next write of that destination removed it once its
    writer had exited."""
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    script = (
        "import sys\nfrom chipadapt.errors import ChipadaptError\nfrom chipadapt.io.outputs import publish_folder\n"
        "try:\n    with publish_folder(sys.argv[1], 'merge') as tmp:\n        (tmp / 'x').write_text('hours of work')\n"
        "except ChipadaptError as err:\n    print(err)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(user)], capture_output=True, text=True)
    assert "kept at" in proc.stdout, proc.stderr
    kept = Path(proc.stdout.split("kept at ")[1].rstrip(")\n"))
    outputs.remove_stale_temporaries(user)
    with run_folder_lock(tmp_path):
        pass
    remove_dead_temporaries(tmp_path)
    assert (kept / "x").read_text() == "hours of work" and (user / "notes.txt").read_text() == "mine"


def killed_between_the_renames(dest: Path) -> None:
    """Publish a new `dest` over the one there in another process that dies (as under SIGKILL) after moving
    the old one aside and before renaming the new one in."""
    script = (
        "import os, sys\nfrom chipadapt.io.outputs import publish_folder\nreal, calls = os.replace, []\n"
        "def replace(*a):\n    calls.append(a)\n    real(*a) if len(calls) == 1 else os._exit(9)\n"
        "os.replace = replace\nwith publish_folder(sys.argv[1], 'train') as tmp:\n    (tmp / 'w').write_text('new')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(dest)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert not dest.exists()  # both copies now lie in temporaries of the dead writer


@pytest.mark.parametrize("cleanup", ["job start", "next write"])
def test_a_replacement_killed_between_its_renames_puts_the_earlier_output_back(tmp_path, caplog, monkeypatch, cleanup):
    """The review found a model/ replaced with overwrite=true lost: killed between its two renames, the old
    folder (moved aside) and the new one were both dead writers' temporaries, and the next job start or write
    of that destination removed both."""
    run = tmp_path / "run"
    model = run / "model"
    with atomic_directory(model, "train") as tmp:
        (tmp / "w").write_text("published")
    with run_folder_lock(run):
        pass  # the killed run's lock: free
    killed_between_the_renames(model)
    if cleanup == "job start":
        remove_dead_temporaries(run)
        assert (model / "w").read_text() == "published"
    else:
        monkeypatch.setattr(outputs, "_looked_for", set())  # the next write is a new process's
        with atomic_directory(model, "train") as tmp:
            assert (model / "w").read_text() == "published"  # back before this write replaces it
            (tmp / "w").write_text("again")
    assert sorted(p.name for p in run.iterdir()) == [".chipadapt.lock", "model"]
    assert f"{model}: an interrupted replacement of it was undone" in caplog.text


def test_a_replacement_stopped_by_an_exception_between_its_renames_puts_the_earlier_output_back(tmp_path, monkeypatch):
    """A signal handler's exception (SIGTERM as Interrupted) between the renames: the new folder was removed
    as half-made, the old one left moved aside, the destination missing."""
    model = tmp_path / "model"
    with atomic_directory(model, "train") as tmp:
        (tmp / "w").write_text("published")
    real, calls = os.replace, []

    def replace(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(outputs.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt), atomic_directory(model, "train") as tmp:
        (tmp / "w").write_text("new")
    assert (model / "w").read_text() == "published"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_checkpoint_save_removes_every_earlier_temporary_of_its_checkpoint(tmp_path, caplog):
    """A save preempted on another node (SIGTERM, then SIGKILL after SLURM's KillWait; requeued elsewhere)
    left a full-size `.last.ckpt.<pid>-<its host>.<random>.tmp`, and the previous release an untagged
    `.last.ckpt.<pid>.<random>.tmp`: kept for ever, the judge taking only this machine's names. Only the
    run folder's lock holder saves a checkpoint, so no writer of either can be alive."""
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    other = "0badc0de" if HOST != "0badc0de" else "1badc0de"
    left = [
        ckpt.parent / f".last.ckpt.{os.getpid()}-{other}.abc123.tmp",
        ckpt.parent / f".last.ckpt.{dead_pid()}.abc.tmp",
    ]
    for path in left:
        path.write_bytes(b"x" * 10)
    kept = [
        ckpt.parent / f".epoch=1.ckpt.{dead_pid()}-{other}.abc.tmp",  # another checkpoint's
        ckpt.parent / ".last.ckpt.backup.tmp",  # a user's
    ]
    for path in kept:
        path.write_text("keep")
    folder = ckpt.parent / f".last.ckpt.{dead_pid()}.v1.tmp"  # a folder: no save of ours made it
    folder.mkdir()
    caplog.set_level("INFO", logger="chipadapt.io.outputs")
    SameFolderCheckpointIO().save_checkpoint({"step": 1}, ckpt)
    assert not any(path.exists() for path in left)
    assert all(path.read_text() == "keep" for path in kept) and folder.is_dir()
    assert all(f"{path}: removed" in caplog.text for path in left)
