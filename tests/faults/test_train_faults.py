"""train.py faults: bad configs, bad data and bad models are one line before any training; run
folders are locked; a model/ the run did not write, or a finished one, is never replaced silently.

Each kind of refusal is made once by a fresh train.py (exit status 2, one `chipadapt: error:` line, no
traceback, inputs unchanged); the other cases run train.py's job in this process (helpers/train_refusals.py),
which raises the message that line carries."""

import fcntl
import json
import os
import shutil

import pytest
import torch
from conftest import TINY_FAST
from helpers.faults import assert_unchanged, assert_user_error, run_entry, snapshot
from helpers.models import tiny_model_copy
from helpers.train_refusals import train_refusal

FAST = [*TINY_FAST, "trainer.max_steps=1", "stage.validate_before=false"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_model_copy(tmp_path_factory.mktemp("train_faults"))


# A fresh train.py for one composition error (Hydra's own) and one validation error (cli.run_job's).
@pytest.mark.parametrize(
    "args, fragment", [(["+optim.lrr=1e-3"], "optim.lrr: unknown key"), (["model=hf_folder"], "model.path: required")]
)
def test_config_errors_are_one_line_from_train_py(tmp_path, args, fragment):
    assert_user_error(run_entry("train.py", [*FAST, *args, f"hydra.run.dir={tmp_path / 'run'}"]), fragment)
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["optim.lr=abc"], "optim.lr"),
        (["+optim.lrr=1e-3"], "optim.lrr: unknown key"),
        (["optim=nope"], "available: adam_const"),
        (["nokey=1"], "nokey"),
        (["seed=abc"], "seed"),
        (["data.seq_len=0"], "data.seq_len"),
        (["data.global_batch_size=-4"], "data.global_batch_size"),
        (["model.dtype=float64"], "model.dtype"),
        (["optim.lr=["], "optim.lr"),
        (["data.sources.docs.weight=abc"], "data.sources.docs.weight"),
        (["+data.sources.docs.colour=red"], "data.sources.docs.colour"),
        (["resume=maybe"], "resume"),
        (["model=hf_folder"], "model.path: required"),
    ],
)
def test_config_errors(tmp_path, args, fragment):
    assert fragment in train_refusal([*FAST, *args], tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()


def _source_args(path):
    return [
        "~data.sources.docs",
        "~data.sources.bugs",
        "~data.sources.rtl",
        "~data.sources.scripts",
        f"+data.sources.mine.path={path}",
    ]


def test_bad_training_data_is_one_line_from_train_py(tmp_path):
    source = tmp_path / "mine.jsonl"
    source.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9 bytes"}\n')
    before = snapshot(source)
    proc = run_entry("train.py", [*FAST, *_source_args(source), f"hydra.run.dir={tmp_path / 'run'}"])
    assert_user_error(proc, "mine.jsonl:2: not UTF-8", before=before)
    assert not (tmp_path / "run" / "model").exists()  # nothing left looking complete
    manifest = tmp_path / "run" / "manifest.json"
    assert not manifest.exists() or json.loads(manifest.read_text())["status"] == "failed"


@pytest.mark.parametrize(
    "content, extra, fragment",
    [
        (b'{"text": "fine"}\n{"text": "caf\xe9 bytes"}\n', [], "mine.jsonl:2: not UTF-8"),
        (b'{"text": "fine"}\n{"text": broken\n', [], "mine.jsonl:2: malformed JSON"),
        (b'{"text": "' + b"x" * 5000 + b'"}\n', ["+data.sources.mine.max_bytes=1000"], "data.sources.mine.max_bytes"),
        (b'{"body": "no text key"}\n', [], "no string field 'text'"),
    ],
)
def test_bad_training_data(tmp_path, content, extra, fragment):
    source = tmp_path / "mine.jsonl"
    source.write_bytes(content)
    before = snapshot(source)
    assert fragment in train_refusal([*FAST, *_source_args(source), *extra], tmp_path / "run")
    assert_unchanged(before)
    assert not (tmp_path / "run" / "model").exists()


def test_huge_file_in_a_folder_source(tmp_path):
    folder = tmp_path / "rtl"
    folder.mkdir()
    (folder / "small.v").write_text("module a; endmodule\n" * 20)
    (folder / "netlist.v").write_text("wire w;\n" * 1000)
    message = train_refusal([*FAST, *_source_args(folder), "+data.sources.mine.max_bytes=4000"], tmp_path / "run")
    assert "netlist.v" in message and "data.sources.mine.max_bytes" in message


@pytest.mark.parametrize("damage", ["pickle_only", "truncated"])
def test_damaged_or_pickled_model_folder(tiny_model, tmp_path, damage):
    folder = tmp_path / "model_in"
    shutil.copytree(tiny_model, folder)
    weights = folder / "model.safetensors"
    if damage == "pickle_only":
        torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:-2048])
    before = snapshot(folder)
    message = train_refusal([*FAST, f"model.path={folder}"], tmp_path / "run")
    assert "model.path" in message and str(folder) in message
    assert_unchanged(before)


def test_corrupt_checkpoint_names_the_file_and_the_way_out(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)  # a run folder, as train.py leaves it
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 half a checkpoint")
    before = snapshot(run / "checkpoints")
    message = train_refusal(FAST, run)
    assert "last.ckpt" in message and "resume=false" in message
    assert_unchanged(before)


def test_model_folder_the_run_did_not_write_is_never_replaced(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)  # an earlier run's folder, where the user put a model of their own
    (run / "model").mkdir(parents=True)
    (run / "model" / "weights.safetensors").write_text("the user's model\n")
    before = snapshot(run / "model")
    assert "not an output of train" in train_refusal(FAST, run)
    assert_unchanged(before)


def test_finished_model_needs_overwrite(tmp_path):
    from chipadapt.io.outputs import write_marker

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}\n")
    write_marker(run / "model", "train")
    before = snapshot(run / "model")
    assert "overwrite=true" in train_refusal(FAST, run)
    assert_unchanged(before)


def test_run_folder_inside_the_input_model(tiny_model, tmp_path):
    folder = tmp_path / "model_in"
    shutil.copytree(tiny_model, folder)
    before = snapshot(folder)
    proc = run_entry("train.py", [*FAST, f"model.path={folder}", f"hydra.run.dir={folder}"])
    assert_user_error(proc, "hydra.run.dir", "is model.path", before=before)
    # A folder inside the model is refused as well, before Hydra writes its records there.
    proc = run_entry("train.py", [*FAST, f"model.path={folder}", f"hydra.run.dir={folder / 'run'}"])
    assert_user_error(proc, "model.path", before=before)


def test_second_process_in_the_same_run_folder_is_refused(tmp_path):
    """The holder is this test's own open file description of the lock: flock refuses a second one as it
    refuses another process's, so train.py's job in this process stands for the second process."""
    run = tmp_path / "run"
    run.mkdir()
    holder = os.open(run / ".chipadapt.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running train.py holds it
    os.write(holder, json.dumps({"pid": 4242, "command": "train.py model=tiny"}).encode())
    try:
        message = train_refusal(FAST, run)
    finally:
        os.close(holder)
    assert "in use by pid 4242" in message
    assert not (run / "manifest.json").exists()
