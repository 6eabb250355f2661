"""A full disk: one line naming the file, the previous checkpoint whole, and the rerun resumes from it."""

import errno
import os
import shutil
import subprocess

import pytest
import torch
from conftest import TINY_FAST
from helpers.fault_jobs import run_here
from helpers.faults import run_entry

from chipadapt.cli import exit_if_disk_full
from chipadapt.errors import ChipadaptError
from chipadapt.io.checkpoint_io import SameFolderCheckpointIO
from chipadapt.io.disk_full import disk_full_message
from chipadapt.io.outputs import HOST


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    killed = path.parent / f".last.ckpt.999999999-{HOST}.x1y2.tmp"  # what a save killed outright (SIGKILL) leaves
    killed.write_bytes(b"\0" * 1000)
    io = SameFolderCheckpointIO()
    io.save_checkpoint({"global_step": 2}, path)
    assert not killed.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as any file made here, not mkstemp's 0600

    def full_disk(obj, handle):  # what torch's zip writer does when a write fails: a RuntimeError over the OSError
        handle.write(b"PK\x03\x04 part of a checkpoint")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 704 vs 598") from None

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as raised:
        io.save_checkpoint({"global_step": 4}, path)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"global_step": 2}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left taking the space


def test_a_full_disk_is_one_line_with_the_file_and_the_space_left(tmp_path, capsys):
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "model.safetensors"))
        except OSError:
            raise OSError(errno.ENOSPC, "No space left on device")  # noqa: B904 (implicit context, as the manifest update raises it)
    except OSError as err:
        failed = err
    with pytest.raises(SystemExit) as stopped:
        exit_if_disk_full(failed)
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chipadapt: error: no space left on device writing ")
    assert str(tmp_path / "model.safetensors") in err and "MB free there" in err
    quota = OSError(errno.EDQUOT, "Disk quota exceeded", "ckpt")
    assert disk_full_message(quota).startswith("quota exceeded writing ckpt")
    # save_pretrained's safetensors writer (Rust) raises its own error type with the OS error's text.
    from safetensors import SafetensorError

    rust = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert disk_full_message(rust).startswith("no space left on device; complete outputs")
    # A user's file quoted in our own error is bad input, whatever it says; other errors are not a full disk.
    exit_if_disk_full(ChipadaptError("data.jsonl line 3: not JSON: 'No space left on device (os error 28)'"))
    exit_if_disk_full(OSError(errno.EACCES, "Permission denied", "ckpt"))


def mount_tmpfs(folder, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    options = f"size={size}" if not os.path.ismount(folder) else f"remount,size={size}"
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode
        == 0
    )


@pytest.mark.integration
def test_train_on_a_disk_that_fills_up_stops_in_one_line_and_resumes_once_there_is_room(tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "2000k"):  # the tiny model's checkpoint is 1.3 MB: one fits, a second beside it not
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        run = disk / "run"
        args = [*TINY_FAST, "trainer.max_steps=4", "callbacks.checkpoint.every_n_train_steps=2"]
        full = run_entry("train.py", [*args, f"hydra.run.dir={run}"])
        assert full.returncode == 1, full.stderr[-3000:]
        lines = [line for line in full.stderr.splitlines() if line.startswith("chipadapt: error:")]
        assert len(lines) == 1 and "Traceback" not in full.stderr, full.stderr[-3000:]
        assert f"no space left on device writing {run / 'checkpoints' / 'last.ckpt'}" in lines[0]
        kept = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert kept["global_step"] == 2  # the step-2 checkpoint, whole
        assert not [p for p in run.rglob("*.tmp")]
        assert mount_tmpfs(disk, "20m")  # the user frees space
        run_here("train", args, run)  # the rerun, in this process: the full disk's line is the process's claim
        assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 4
        assert (run / "model" / "model.safetensors").is_file()
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
