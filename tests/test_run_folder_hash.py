"""A SLURM job's default run folder is named by its command line, whatever the order its overrides of
different keys were given in (a launcher that reorders them on requeue, a user retyping the line finds the
folder again), but not whatever the order of overrides of one key: Hydra's last one wins."""

import itertools

import pytest

from chipadapt.config_resolvers import canonical_order, command_line_hash, run_folder


def folder(*overrides: str, hydra: tuple[str, ...] = ("hydra.mode=RUN",)) -> str:
    return run_folder("2024-01-01/00-00-00", "train", "train", list(overrides), list(hydra))


@pytest.fixture(autouse=True)
def in_a_slurm_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)


def test_overrides_of_different_keys_name_one_folder_in_any_order():
    line = ["model=tiny", "optim.lr=3e-4", "+tag=requeued", "trainer=cpu", "data.seq_len=512"]
    folders = {folder(*order) for order in itertools.permutations(line)}
    assert len(folders) == 1 and folders.pop().startswith("slurm-4242/train-")
    hydra = ("hydra.job.chdir=false", "hydra.verbose=true")
    assert folder("a=1", hydra=hydra) == folder("a=1", hydra=hydra[::-1])


def test_overrides_of_one_key_keep_their_order_as_the_last_one_wins():
    assert folder("optim.lr=1e-3", "optim.lr=1e-4") != folder("optim.lr=1e-4", "optim.lr=1e-3")
    # a key and a key inside it set one value: `model={...}` then `model.path=y` is not the reverse
    assert folder("model={path:x}", "model.path=y") != folder("model.path=y", "model={path:x}")
    # adding or deleting a key counts as setting it
    assert folder("+tag=a", "~tag") != folder("~tag", "+tag=a")
    # appends and deletions of different keys keep their order too: composed in the order given, `+a=one
    # +b=two` and `+b=two +a=one` may set one key differently (a group's package, a deleted default)
    assert folder("+a=one", "+b=two") != folder("+b=two", "+a=one")
    assert folder("+a=one", "~b") != folder("~b", "+a=one")
    # ...and moving another key's override between them changes nothing
    assert folder("optim.lr=1e-3", "seed=1", "optim.lr=1e-4") == folder("seed=1", "optim.lr=1e-3", "optim.lr=1e-4")


def test_the_canonical_order_keeps_each_keys_own_sequence():
    ordered = canonical_order(["b=2", "a=3", "b=1", "a.x=0", "c=9"])
    assert ordered == ["a=3", "a.x=0", "b=2", "b=1", "c=9"]
    assert canonical_order(ordered) == ordered
    # an ordered line hashes as it always did: the list itself, in the order given
    assert command_line_hash("train", ["a=1", "b=2"], []) == "8ac58008"


def test_outside_slurm_the_folder_is_the_timestamp(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID")
    assert folder("b=2", "a=1") == "2024-01-01/00-00-00"


def test_a_folder_named_before_the_canonical_order_is_found_by_a_requeue(tmp_path, monkeypatch):
    """A job started on code that hashed the overrides in their typed order, requeued after an upgrade."""
    monkeypatch.chdir(tmp_path)
    line = ("trainer=cpu", "model=tiny")  # not in canonical order: the two hashes differ
    typed = f"slurm-4242/train-{command_line_hash('train', list(line), ['hydra.mode=RUN'], canonical=False)}"
    assert folder(*line) != typed
    (tmp_path / "outputs" / typed).mkdir(parents=True)
    assert folder(*line) == typed
    (tmp_path / "outputs" / folder("model=tiny", "trainer=cpu")).mkdir(parents=True)  # both: the canonical one
    assert folder(*line) == folder("model=tiny", "trainer=cpu") != typed
