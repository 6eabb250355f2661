"""A run folder, output or cache named where no folder can be made (under a regular file, in a folder
that takes no new entries) is one line naming the setting, exit 2, before any work. The trial met
tracebacks: FileExistsError/NotADirectoryError/PermissionError from Hydra's mkdir of hydra.run.dir
(before any of our code), PermissionError from mkdtemp in export.py and merge.py, FileExistsError from
the tokenizer cache's lock. And a run folder that is a link to the input model is named as the input
model (it said "holds files of no chipadapt run")."""

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CONF
from helpers.faults import assert_user_error, run_entry
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from chipadapt.errors import ChipadaptError
from chipadapt.io.creatable import cannot_create
from chipadapt.io.lock import cache_entry_lock
from chipadapt.io.outputs import check_output_folder, publish_folder
from chipadapt.run_folder_guard import RunFolderGuard


@pytest.fixture
def closed_folder(tmp_path):
    """A folder that takes no new entries: immutable for root (mode bits do not stop root), read-only
    for anyone else."""
    folder = tmp_path / "closed"
    folder.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            pytest.skip("no chattr +i here (root ignores mode bits)")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("a user's file\n")
    return path


def test_why_a_folder_cannot_be_made_is_said_in_words(tmp_path, a_file, closed_folder):
    assert cannot_create(a_file) == "it exists and is not a folder"
    assert cannot_create(a_file / "x" / "y") == f"{a_file} is not a folder"
    assert cannot_create(closed_folder / "x").startswith(f"{closed_folder}: ")
    assert cannot_create(tmp_path / "new" / "deeper") is None
    assert cannot_create(tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["closed", "notes.txt"]  # the probe left nothing


def test_a_full_disk_is_not_taken_for_a_bad_place(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("tempfile.mkdtemp", full)
    assert cannot_create(tmp_path / "x") is None  # told where it happens, as a full disk (exit 1)


@pytest.mark.parametrize("where", ["under_a_file", "in_a_closed_folder"])
def test_an_output_that_cannot_be_made_is_refused_before_the_work(tmp_path, a_file, closed_folder, where):
    dest = a_file / "merged" if where == "under_a_file" else closed_folder / "merged"
    with pytest.raises(ChipadaptError, match=rf"^output: cannot create {dest}: "):
        check_output_folder(dest, "merge", "output", overwrite=False)
    with pytest.raises(ChipadaptError, match=rf"^output: cannot create {dest}: "):
        with publish_folder(dest, "merge", "output"):
            pytest.fail("no temporary folder can be made there")


def test_an_existing_output_folder_that_takes_no_new_files_is_refused(closed_folder):
    with pytest.raises(ChipadaptError, match=rf"^output: cannot write into {closed_folder}: "):
        check_output_folder(closed_folder, "compare", "output", overwrite=False)


def test_a_cache_under_a_file_is_one_line(a_file, closed_folder):
    for entry in (a_file / "tiny--augmented-abc", closed_folder / "tiny--augmented-abc"):
        with pytest.raises(ChipadaptError, match="tokenizer.adapt.cache_dir: cannot "):
            with cache_entry_lock(entry, "tokenizer.adapt.cache_dir"):
                pytest.fail("no lock can be taken there")


def guard_refusal(capsys, command: str, overrides: list[str], multirun: bool = False) -> str | None:
    """The run folder guard's line where it refuses the composed command line, else None."""
    import chipadapt  # noqa: F401  (resolvers)

    mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = GlobalHydra.instance().hydra.compose_config(command, overrides, run_mode=mode)
        try:
            guard = RunFolderGuard()
            (guard.on_multirun_start if multirun else guard.on_run_start)(config, config_name=command)
        except SystemExit as stop:
            assert stop.code == 2
            return capsys.readouterr().err.strip()
    return None


@pytest.mark.parametrize("where", ["under_a_file", "a_file", "in_a_closed_folder", "a_closed_folder"])
def test_a_run_folder_that_cannot_be_made_is_refused_before_hydra_makes_it(capsys, a_file, closed_folder, where):
    folder = {
        "under_a_file": a_file / "run",
        "a_file": a_file,
        "in_a_closed_folder": closed_folder / "run",
        "a_closed_folder": closed_folder,
    }[where]
    line = guard_refusal(capsys, "evaluate", ["model=tiny", f"hydra.run.dir={folder}"])
    assert line is not None and line.startswith("chipadapt: error: hydra.run.dir: cannot "), line
    assert str(folder) in line
    sweep = guard_refusal(capsys, "train", ["model=tiny", "seed=1,2", f"hydra.sweep.dir={folder}"], multirun=True)
    assert sweep is not None and sweep.startswith("chipadapt: error: hydra.sweep.dir: cannot "), sweep


def test_a_run_folder_that_is_a_link_to_the_input_model_is_named_as_such(tmp_path, capsys):
    model = tmp_path / "mymodel"
    model.mkdir()
    (model / "config.json").write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(model)
    line = guard_refusal(capsys, "train", ["model=hf_folder", f"model.path={model}", f"hydra.run.dir={link}"])
    assert line == (
        f"chipadapt: error: hydra.run.dir: {link} (a link to {model}) is model.path ({model}); "
        "write the run somewhere else"
    )
    (model / "sub").mkdir()
    (tmp_path / "sublink").symlink_to(model / "sub")
    line = guard_refusal(
        capsys, "train", ["model=hf_folder", f"model.path={model}", f"hydra.run.dir={tmp_path}/sublink"]
    )
    assert line is not None and "lies inside model.path" in line


def test_hydra_run_dir_under_a_file_is_one_line_from_the_command(a_file):
    """End to end: Hydra makes the run folder before any of our code runs in the job."""
    proc = run_entry("evaluate.py", ["model=tiny", "eval=[perplexity]", f"hydra.run.dir={a_file / 'run'}"])
    assert_user_error(proc, f"hydra.run.dir: cannot create {a_file / 'run'}: {a_file} is not a folder")
    assert Path(a_file).read_text() == "a user's file\n"
