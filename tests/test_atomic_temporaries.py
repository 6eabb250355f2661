"""Single-file atomic writes (io/atomic.py) name their temporary with the writer's pid, ending in .tmp,
as folder and checkpoint writes do: what a killed writer left (a SIGKILL between the write and the
rename) goes at the next write of the same file, or as the next job starts in the run folder, while a
live writer's temporary and a user's file stay. The kill trial found `.manifest.json.<random>.tmp` and
`.results.csv.<random>.tmp` kept after successful reruns, their names telling nothing of their writer."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from omegaconf import OmegaConf

from chipadapt.io.atomic import atomic_file, write_text_atomic
from chipadapt.io.lock import run_folder_lock
from chipadapt.io.outputs import HOST, remove_dead_temporaries
from chipadapt.run_folder_guard import RunFolderGuard


def killed_writer(path: Path, how: str = "write_text_atomic") -> list[Path]:
    """Run a writer of `path` in another process that dies (as under SIGKILL: no cleanup runs) between its
    write and its rename; the temporaries it left."""
    script = textwrap.dedent(f"""
        import os, sys
        from chipadapt.io import atomic
        atomic.os.replace = lambda *a: os._exit(9)
        if {how!r} == "write_text_atomic":
            atomic.write_text_atomic(sys.argv[1], "half")
        else:
            with atomic.atomic_file(sys.argv[1]) as tmp:
                tmp.write_text("half")
    """)
    before = set(path.parent.iterdir()) if path.parent.is_dir() else set()
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    return sorted(set(path.parent.iterdir()) - before)


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
