"""A folder checkpoint's swap cut between its two renames is finished by the next resume (io/folder_swap.py),
which pipeline.train runs before it takes the run folder's lock. A second command started into a folder a job
holds finished that job's swap under it (its own second rename then failed), before the lock refused it."""

from omegaconf import OmegaConf

from chipadapt.io import folder_swap
from chipadapt.io.lock import run_folder_lock
from chipadapt.stages.resume_decision import resume_checkpoint


def mid_swap(run):
    """A sharded checkpoint between its two renames: the old one moved aside, the new one complete."""
    ckpt = run / "checkpoints" / "last.ckpt"
    for where, step in ((folder_swap.old_path(ckpt), "old"), (folder_swap.partial_path(ckpt), "new")):
        where.mkdir(parents=True)
        (where / "meta.pt").write_text(step)
    return ckpt


def test_a_resume_leaves_a_swap_alone_while_a_job_holds_the_folder_and_finishes_it_after(tmp_path):
    run = tmp_path / "run"
    ckpt = mid_swap(run)
    cfg = OmegaConf.create({"resume": True, "overwrite": False, "stage": {"name": "dapt"}})
    with run_folder_lock(run):  # the job in the middle of its save
        assert resume_checkpoint(cfg, run, check=False) is None
        assert folder_swap.partial_path(ckpt).is_dir() and folder_swap.old_path(ckpt).is_dir()
        assert not ckpt.exists()
    assert resume_checkpoint(cfg, run, check=False) == str(ckpt)  # the job is gone: the rerun finishes it
    assert (ckpt / "meta.pt").read_text() == "new"
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.ckpt"]
