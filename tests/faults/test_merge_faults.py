"""merge.py faults: it never writes over or deletes an input, a folder holding one, or a folder it did
not write; damaged weights are one line naming the file and tensor."""

import json
import shutil

import pytest
import torch
from helpers.faults import assert_unchanged, assert_user_error, run_entry, snapshot
from helpers.models import perturbed_copy, tiny_model_copy

from chipadapt.io.outputs import HOST


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """models/{chip,instruct} (the tiny model and a perturbed copy) beside a user's own notes."""
    root = tmp_path_factory.mktemp("faults") / "models"
    perturbed_copy(tiny_model_copy(root, "instruct"), root / "chip")
    (root / "notes.txt").write_text("the user's own file\n")
    return root


def merge_args(models, out, *extra):
    return [f"models.chip={models / 'chip'}", f"models.instruct={models / 'instruct'}", f"output={out}", *extra]


def broken_copy(models, tmp_path, damage) -> "Path":  # noqa: F821
    folder = tmp_path / "broken"
    shutil.copytree(models / "chip", folder)
    damage(folder / "model.safetensors")
    return folder


@pytest.mark.parametrize("where", ["parent", "chip", "instruct", "inside_chip", "user_folder", "user_file"])
def test_merge_refuses_outputs_that_would_lose_data(models, tmp_path, where):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("months of work\n")
    (tmp_path / "plain.txt").write_text("x\n")
    out = {
        "parent": models,
        "chip": models / "chip",
        "instruct": models / "instruct",
        "inside_chip": models / "chip" / "merged",
        "user_folder": user,
        "user_file": tmp_path / "plain.txt",
    }[where]
    before = snapshot(models, user, tmp_path / "plain.txt")
    proc = run_entry("merge.py", merge_args(models, out, f"hydra.run.dir={tmp_path / 'run'}"))
    assert_user_error(proc, "output:", before=before)
    assert not (models / "chip" / "merged").exists()


def test_previous_output_is_replaced_only_with_overwrite(models, tmp_path):
    out = tmp_path / "merged"
    first = run_entry("merge.py", merge_args(models, out, "merge.lam=0.2", f"hydra.run.dir={tmp_path / 'r1'}"))
    assert first.returncode == 0, first.stderr[-2000:]
    before = snapshot(out, models)
    again = run_entry("merge.py", merge_args(models, out, "merge.lam=0.8", f"hydra.run.dir={tmp_path / 'r2'}"))
    assert_user_error(again, "overwrite=true", before=before)
    replaced = run_entry(
        "merge.py", merge_args(models, out, "merge.lam=0.8", "overwrite=true", f"hydra.run.dir={tmp_path / 'r3'}")
    )
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert json.loads((out / "merge_manifest.json").read_text())["summary"]["lam"] == 0.8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".merged")]  # nothing left beside it


def _truncate_data(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4096])


def _truncate_header(path):
    path.write_bytes(path.read_bytes()[:40])


def _garble_header(path):
    data = bytearray(path.read_bytes())
    data[8:16] = b"{not js!"
    path.write_bytes(bytes(data))


def _empty(path):
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (_truncate_data, "truncated"),
        (_truncate_header, "not a complete safetensors"),
        (_garble_header, "damaged safetensors header"),
        (_empty, "not a complete"),
    ],
)
def test_damaged_weights_are_one_line_naming_the_file(models, tmp_path, damage, fragment):
    broken = broken_copy(models, tmp_path, damage)
    before = snapshot(models, broken)
    proc = run_entry(
        "merge.py",
        [
            f"models.chip={broken}",
            f"models.instruct={models / 'instruct'}",
            f"output={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
    )
    line = assert_user_error(proc, "model.safetensors", fragment, before=before)
    if damage is _truncate_data:
        assert "tensor " in line  # names the tensor that runs past the end
    assert not (tmp_path / "out").exists()


def test_pickle_only_folder_is_refused(models, tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(models / "chip", pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    before = snapshot(pickled)
    proc = run_entry(
        "merge.py",
        [
            f"models.chip={pickled}",
            f"models.instruct={models / 'instruct'}",
            f"output={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
    )
    assert_user_error(proc, "models.chip", "safetensors", before=before)


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([], "models.chip: required"),
        (["merge.lam=abc"], "merge.lam"),
        (["merge.lam=1.5"], "merge.allow_extrapolation=true"),
        (["merge=nope"], "available: chipalign"),
        (["+merge.lamm=0.5"], "merge.lamm: unknown key"),
        (["merge=ties", "merge.method.density=2"], "merge.method.density"),
        (["merge.schedule=[{lam: 0.5}]"], "merge.schedule[0]"),
    ],
)
def test_config_errors_before_any_work(models, tmp_path, args, fragment):
    base = [] if args == [] else merge_args(models, tmp_path / "out")
    proc = run_entry("merge.py", [*base, *args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert_user_error(proc, fragment)
    assert not (tmp_path / "out").exists()


def test_lambda_outside_unit_interval_with_extrapolation_allowed(models, tmp_path):
    proc = run_entry(
        "merge.py",
        merge_args(
            models,
            tmp_path / "out",
            "merge=linear",
            "merge.lam=1.2",
            "merge.allow_extrapolation=true",
            f"hydra.run.dir={tmp_path / 'run'}",
        ),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_stale_temporary_folder_of_a_killed_merge_is_cleaned_on_the_next_run(models, tmp_path):
    # A pid no process has (above any pid_max), as a merge killed with SIGKILL leaves behind; a real
    # exited child's pid could be handed to a new process on a busy host before the merge checks it.
    stale = tmp_path / f".out.999999999-{HOST}.abc.tmp"
    stale.mkdir()
    (stale / "model.safetensors.partial").write_bytes(b"\0" * 100)
    mine = tmp_path / ".out.keep"  # not the merge's pattern: never touched
    mine.mkdir()
    before = snapshot(models)
    proc = run_entry("merge.py", merge_args(models, tmp_path / "out", f"hydra.run.dir={tmp_path / 'run'}"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not stale.exists() and mine.exists()
    assert_unchanged(before)
