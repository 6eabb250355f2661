"""export.py run=RUN step=N where several checkpoint files claim step N (an earlier run's under another
callbacks.checkpoint.filename, or one from before settings were recorded, both kept by a start-over): the one
whose recorded settings are the run's, else one line naming the files; never the first by name."""

import shutil

import pytest
import torch
from conftest import TINY_FAST, compose
from omegaconf import OmegaConf

from chipadapt.checkpoint_choice import find_checkpoint
from chipadapt.errors import ChipadaptError
from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY


def _step_2(run):
    cfg = OmegaConf.create({"checkpoint": None, "run": str(run), "step": 2})
    return find_checkpoint(cfg)[1]


def test_the_runs_own_checkpoint_of_a_step_is_exported_never_the_first_by_name(tmp_path):
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    keep = ["callbacks.checkpoint.save_top_k=-1", "callbacks.checkpoint.every_n_train_steps=1"]
    train(compose([*TINY_FAST, "trainer.max_steps=2", "stage.validate_before=false", *keep], run))
    folder = run / "checkpoints"
    own = folder / "epoch=0-step=2.ckpt"
    assert own.is_file() and _step_2(run) == own

    earlier = torch.load(own, weights_only=False)
    earlier[CHECKPOINT_KEY] = {**earlier[CHECKPOINT_KEY], "optim.lr": 1.0}  # another run's settings
    torch.save(earlier, folder / "a-step=2.ckpt")  # sorts first, as another filename's could
    unrecorded = {key: value for key, value in earlier.items() if key != CHECKPOINT_KEY}
    torch.save(unrecorded, folder / "b-step=2.ckpt")  # from before settings were recorded
    assert _step_2(run) == own

    shutil.copy(own, folder / "c-step=2.ckpt")  # two that both record this run's settings: not guessed
    with pytest.raises(ChipadaptError, match=r"holds 4 checkpoints of step 2 \(a-step=2.ckpt, .*c-step=2.ckpt"):
        _step_2(run)
    (folder / "c-step=2.ckpt").unlink()
    own.unlink()  # only the other run's and the unrecorded one: neither is known to be this run's
    with pytest.raises(ChipadaptError, match="none records the settings of this run; name the one to export"):
        _step_2(run)


def test_names_of_one_file_are_one_candidate_and_an_unreadable_one_is_set_aside(tmp_path):
    """A `best-step=2.ckpt` link to the step's checkpoint read as a second checkpoint recording the run's settings
    (refused: "2 record this run's settings"); a file of the step that cannot be read stopped the export."""
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    keep = ["callbacks.checkpoint.save_top_k=-1", "callbacks.checkpoint.every_n_train_steps=1"]
    train(compose([*TINY_FAST, "trainer.max_steps=2", "stage.validate_before=false", *keep], run))
    folder = run / "checkpoints"
    own = folder / "epoch=0-step=2.ckpt"
    (folder / "best-step=2.ckpt").symlink_to(own.name)
    assert _step_2(run) == own
    (folder / "a-step=2.ckpt").write_bytes(b"cut short")
    assert _step_2(run) == own
