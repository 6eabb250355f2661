"""The rules behind every command that writes a folder (in-process, no model needed)."""

import os

import pytest

from chipadapt.errors import ChipadaptError
from chipadapt.io.lock import cache_entry_lock, run_folder_lock
from chipadapt.io.outputs import check_output_folder, publish_folder, written_by


def test_published_folder_is_marked_and_replaced_only_after_the_new_one_is_complete(tmp_path):
    dest = tmp_path / "out"
    with publish_folder(dest, "merge") as tmp:
        (tmp / "a.txt").write_text("first")
    assert written_by(dest) == "merge" and (dest / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with publish_folder(dest, "merge") as tmp:
            (tmp / "a.txt").write_text("second")
            raise RuntimeError("crash while writing")
    assert (dest / "a.txt").read_text() == "first"  # the old output survives a failed replacement
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # and no temporary folder is left


def test_a_published_folder_is_as_readable_as_the_umask_allows(tmp_path):
    """safetensors and mkstemp write 0600: a teammate in the group could not read the weights."""
    import stat

    old = os.umask(0o027)
    try:
        with publish_folder(tmp_path / "model", "train") as tmp:
            weights = tmp / "model.safetensors"
            weights.write_bytes(b"x")
            weights.chmod(0o600)
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "shard").write_bytes(b"y")
            (tmp / "sub" / "shard").chmod(0o600)
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "model" / "model.safetensors") == 0o640  # group may read, others not (umask 027)
    assert mode(tmp_path / "model" / "sub") == 0o750 and mode(tmp_path / "model" / "sub" / "shard") == 0o640


def test_a_folder_of_another_command_or_of_the_user_is_never_replaced(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(ChipadaptError, match="not an output of merge"):
        with publish_folder(user, "merge") as tmp:
            (tmp / "x").write_text("x")
    assert (user / "notes.txt").read_text() == "mine" and not (user / "x").exists()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".mine.")]
    assert len(kept) == 1 and (kept[0] / "x").is_file()  # the new output is kept, not thrown away


def test_a_refusal_from_inside_the_block_leaves_no_half_made_folder(tmp_path):
    """A ChipadaptError raised while the output was being made (curating inputs that gave no document)
    left its temporary folder beside the destination."""
    with pytest.raises(ChipadaptError, match="no document"):
        with publish_folder(tmp_path / "corpus", "curate") as tmp:
            (tmp / "report.json").write_text("{}")
            raise ChipadaptError("no document kept")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "relation, message",
    [("same", "is models.chip itself"), ("parent", "holds models.chip"), ("inside", "lies inside models.chip")],
)
def test_check_refuses_inputs_and_their_parents(tmp_path, relation, message):
    chip = tmp_path / "models" / "chip"
    chip.mkdir(parents=True)
    dest = {"same": chip, "parent": chip.parent, "inside": chip / "merged"}[relation]
    with pytest.raises(ChipadaptError, match=message):
        check_output_folder(dest, "merge", "output", overwrite=True, inputs=[("models.chip", chip)])


def test_check_accepts_new_and_empty_folders_and_own_outputs_with_overwrite(tmp_path):
    assert check_output_folder(tmp_path / "new", "train", "x", overwrite=False) == (tmp_path / "new").resolve()
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", "train", "x", overwrite=False)
    with publish_folder(tmp_path / "done", "train") as tmp:
        (tmp / "f").write_text("f")
    with pytest.raises(ChipadaptError, match="overwrite=true"):
        check_output_folder(tmp_path / "done", "train", "x", overwrite=False)
    check_output_folder(tmp_path / "done", "train", "x", overwrite=True)
    with pytest.raises(ChipadaptError, match="not an output of merge"):
        check_output_folder(tmp_path / "done", "merge", "x", overwrite=True)


def test_lock_is_exclusive_and_released(tmp_path, monkeypatch):
    for variable in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(variable, raising=False)
    with run_folder_lock(tmp_path):
        with pytest.raises(ChipadaptError, match=f"in use by pid {os.getpid()}"):
            with run_folder_lock(tmp_path):
                pass
    with run_folder_lock(tmp_path):  # released when the holder ends
        pass


def test_lock_names_the_holder_by_the_command_the_user_typed(tmp_path, monkeypatch):
    """A submitit worker's argv is `_submit.py <folder>`; the error must show the user's command."""
    from chipadapt.io.command_line import record_command

    for variable in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr("sys.argv", ["/venv/lib/submitit/core/_submit.py", "/tmp/jobs"])
    monkeypatch.setenv("CHIPADAPT_COMMAND", "")
    record_command(["/home/u/train.py", "-m", "optim.lr=1e-4,5e-6"])
    with run_folder_lock(tmp_path):
        with pytest.raises(ChipadaptError, match=r"\(train.py -m optim.lr=1e-4,5e-6\)"):
            with run_folder_lock(tmp_path):
                pass


def test_a_second_builder_of_a_cache_entry_waits_and_then_finds_it_built(tmp_path):
    """flock conflicts between two open files even in one process, so threads stand in for two jobs
    of a sweep. The first releases the entry only once the second has said it is waiting."""
    import logging
    import threading

    entry = tmp_path / "cache" / "entry"
    waiting = threading.Event()
    seen = []

    class Waiting(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())
            waiting.set()

    def second_builder():
        with cache_entry_lock(entry):
            seen.append((entry / "done").read_text())  # the block runs only after the first build

    handler = Waiting(logging.INFO)
    lock_log = logging.getLogger("chipadapt.io.lock")
    lock_log.addHandler(handler)
    old_level = lock_log.level
    lock_log.setLevel(logging.INFO)
    try:
        with cache_entry_lock(entry):
            second = threading.Thread(target=second_builder)
            second.start()
            assert waiting.wait(30)
            entry.mkdir()
            (entry / "done").write_text("built")
        second.join(30)
    finally:
        lock_log.removeHandler(handler)
        lock_log.setLevel(old_level)
    assert seen[0].startswith(f"waiting for pid {os.getpid()}") and str(entry) in seen[0]
    assert seen[1:] == ["built"]
    with cache_entry_lock(entry):  # released by both
        pass
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".entry.build.lock", "entry"]


def test_a_filesystem_without_flock_runs_unlocked_with_a_warning(tmp_path, monkeypatch, caplog):
    """Lustre without its flock mount option: commands still run, as before the locks existed."""
    import errno
    import fcntl

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    for variable in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(fcntl, "flock", no_flock)
    ran = []
    with run_folder_lock(tmp_path / "run"):
        with cache_entry_lock(tmp_path / "cache" / "entry"):
            ran.append(True)
    assert ran == [True]
    assert "the run folder is not locked" in caplog.text and "entry is built without a lock" in caplog.text


def test_a_new_metric_name_rewrites_metrics_csv_whole_and_a_failed_rewrite_keeps_the_curve(tmp_path, monkeypatch):
    import csv

    from chipadapt.loggers.csv import AppendingCSVLogger

    logger = AppendingCSVLogger(save_dir=str(tmp_path), name="", version="")
    logger.log_metrics({"train/loss": 2.0}, step=0)
    logger.save()
    logger.log_metrics({"train/loss": 1.5, "val/loss": 1.7}, step=1)  # a new name: the header is rewritten
    logger.save()
    metrics = tmp_path / "metrics.csv"
    rows = list(csv.DictReader(metrics.open(newline="")))
    assert [(r["step"], r["train/loss"], r["val/loss"]) for r in rows] == [("0", "2.0", ""), ("1", "1.5", "1.7")]
    assert oct(metrics.stat().st_mode & 0o777) == oct(0o666 & ~umask())

    before = metrics.read_bytes()
    logger.log_metrics({"lr": 1e-3}, step=2)

    def killed(self, rows):  # the process dies while the rows are being written again
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(KeyboardInterrupt):
        logger.save()
    assert metrics.read_bytes() == before  # Lightning's own rewrite had emptied the file by then
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    logger.log_hyperparams({"optim": {"lr": 1e-3}})
    assert "lr: 0.001" in (tmp_path / "hparams.yaml").read_text()


def umask() -> int:
    from chipadapt.io.outputs import current_umask

    return current_umask()


def test_a_rebuilt_model_is_swapped_in_whole_with_the_restored_records_kept(tmp_path):
    from chipadapt.io import folder_swap
    from chipadapt.reproduce.rebuild import put_in_place

    model, built = tmp_path / "step" / "model", tmp_path / ".rebuild" / "step" / "model"
    model.mkdir(parents=True)
    (model / "tokenizer_report.json").write_text("restored")
    for folder in (built, tmp_path / "second"):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_text("weights")
        (folder / "tokenizer_report.json").write_text("the rebuild's own")
    put_in_place(built, model)
    assert (model / "model.safetensors").read_text() == "weights" and not built.exists()
    assert (model / "tokenizer_report.json").read_text() == "restored"
    assert sorted(p.name for p in model.parent.iterdir()) == ["model"]

    # A kill between the swap's two renames: the next rebuild puts the folder back before anything else.
    (model / "model.safetensors").unlink()
    model.rename(folder_swap.old_path(model))
    put_in_place(tmp_path / "second", model)
    assert (model / "tokenizer_report.json").read_text() == "restored"
    assert (model / "model.safetensors").read_text() == "weights"
    assert sorted(p.name for p in model.parent.iterdir()) == ["model"]


def test_a_resumed_run_starts_its_rows_on_a_new_line_after_one_cut_short(tmp_path):
    import csv

    from chipadapt.loggers.csv import AppendingCSVLogger

    metrics = tmp_path / "metrics.csv"
    metrics.write_bytes(b"step,train/loss\r\n0,2.0\r\n1,1.9")  # the run was killed inside its last row
    logger = AppendingCSVLogger(save_dir=str(tmp_path), name="", version="")
    logger.log_metrics({"train/loss": 1.8}, step=1)
    logger.save()
    rows = list(csv.DictReader(metrics.open(newline="")))
    assert [(r["step"], r["train/loss"]) for r in rows] == [("0", "2.0"), ("1", "1.9"), ("1", "1.8")]
