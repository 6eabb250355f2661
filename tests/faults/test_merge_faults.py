"""merge.py faults: it never writes over or deletes an input, a folder holding one, or a folder it did
not write; damaged weights are one line naming the file and tensor."""

import json
import shutil

import pytest
import torch
from helpers.fault_jobs import refused_here, run_here
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


LOSSY = ["parent", "chip", "instruct", "inside_chip", "user_folder", "user_file"]


def lossy_output(models, tmp_path, where) -> tuple["Path", dict]:  # noqa: F821
    """An output whose writing would lose data (an input, a folder holding one, a folder or file merge.py
    did not write), and the snapshot of what must stay as it is."""
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
    return out, snapshot(models, user, tmp_path / "plain.txt")


def test_merge_py_refuses_an_output_inside_its_input_in_one_line(models, tmp_path):
    """The command line's refusal: exit status 2, one line, nothing written (every case: in-process below)."""
    out, before = lossy_output(models, tmp_path, "inside_chip")
    proc = run_entry("merge.py", merge_args(models, out, f"hydra.run.dir={tmp_path / 'run'}"))
    assert_user_error(proc, "output:", before=before)
    assert not (models / "chip" / "merged").exists()


@pytest.mark.parametrize("where", LOSSY)
def test_merge_refuses_outputs_that_would_lose_data(models, tmp_path, where):
    out, before = lossy_output(models, tmp_path, where)
    refused_here("merge", merge_args(models, out), tmp_path / "run", "output:", before=before)
    assert not (models / "chip" / "merged").exists()


def test_previous_output_is_replaced_only_with_overwrite(models, tmp_path):
    out = tmp_path / "merged"
    run_here("merge", merge_args(models, out, "merge.lam=0.2"), tmp_path / "r1")
    before = snapshot(out, models)
    refused_here("merge", merge_args(models, out, "merge.lam=0.8"), tmp_path / "r2", "overwrite=true", before=before)
    run_here("merge", merge_args(models, out, "merge.lam=0.8", "overwrite=true"), tmp_path / "r3")
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


DAMAGES = [
    (_truncate_data, "truncated"),
    (_truncate_header, "not a complete safetensors"),
    (_garble_header, "damaged safetensors header"),
    (_empty, "not a complete"),
]


def broken_args(models, broken, tmp_path) -> list[str]:
    return [f"models.chip={broken}", f"models.instruct={models / 'instruct'}", f"output={tmp_path / 'out'}"]


def test_merge_py_names_the_file_and_tensor_of_damaged_weights_in_one_line(models, tmp_path):
    """The command line's refusal of damaged weights (every damage: in-process below)."""
    broken = broken_copy(models, tmp_path, _truncate_data)
    before = snapshot(models, broken)
    proc = run_entry("merge.py", [*broken_args(models, broken, tmp_path), f"hydra.run.dir={tmp_path / 'run'}"])
    line = assert_user_error(proc, "model.safetensors", "truncated", before=before)
    assert "tensor " in line  # names the tensor that runs past the end
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, fragment", DAMAGES)
def test_damaged_weights_are_one_line_naming_the_file(models, tmp_path, damage, fragment):
    broken = broken_copy(models, tmp_path, damage)
    before = snapshot(models, broken)
    line = refused_here(
        "merge", broken_args(models, broken, tmp_path), tmp_path / "run", "model.safetensors", fragment, before=before
    )
    if damage is _truncate_data:
        assert "tensor " in line  # names the tensor that runs past the end
    assert not (tmp_path / "out").exists()


def test_pickle_only_folder_is_refused(models, tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(models / "chip", pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    before = snapshot(pickled)
    refused_here(
        "merge", broken_args(models, pickled, tmp_path), tmp_path / "run", "models.chip", "safetensors", before=before
    )


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
    extra = ["merge=linear", "merge.lam=1.2", "merge.allow_extrapolation=true"]
    assert run_here("merge", merge_args(models, tmp_path / "out", *extra), tmp_path / "run")["lam"] == 1.2


def test_stale_temporary_folder_of_a_killed_merge_is_cleaned_on_the_next_run(models, tmp_path):
    # A pid no process has (above any pid_max), as a merge killed with SIGKILL leaves behind; a real
    # exited child's pid could be handed to a new process on a busy host before the merge checks it.
    stale = tmp_path / f".out.999999999-{HOST}.abc.tmp"
    stale.mkdir()
    (stale / "model.safetensors.partial").write_bytes(b"\0" * 100)
    mine = tmp_path / ".out.keep"  # not the merge's pattern: never touched
    mine.mkdir()
    before = snapshot(models)
    run_here("merge", merge_args(models, tmp_path / "out"), tmp_path / "run")
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert not stale.exists() and mine.exists()
    assert_unchanged(before)
