"""`overwrite=true` over a completed run gives what a fresh run gives (the trial: a 4-step run rerun
with overwrite=true resumed its own finished checkpoint, trained nothing, and recorded `train_loss`
None instead of 6.197 and its final validation at step 3 instead of 4). A finished training is
started over; a longer one still continues from the checkpoint; a fit resumed at its end (a kill
between the last checkpoint and the model's save) ends where the run that wrote it ended."""

import csv
import json
import shutil

import lightning as L
import pytest
import torch
from conftest import TINY_FAST, compose, run_train
from lightning.pytorch.loggers.logger import Logger
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from chipadapt.callbacks.step_checkpoint import StepCheckpoint
from chipadapt.stages.checkpoint_records import FINISHED_KEY, RecordSettings
from chipadapt.stages.finished_checkpoint import finished_training


class Line(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss, on_step=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.layer(batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.arange(32.0).reshape(16, 2) / 16), batch_size=2)

    def val_dataloader(self):
        return self.train_dataloader()


class Steps(Logger):
    """The step each logged metric was logged at."""

    def __init__(self):
        super().__init__()
        self.logged: dict[str, list[int]] = {}

    name, version = "steps", "0"

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        for key in metrics:
            self.logged.setdefault(key, []).append(step)


def fit(folder, max_steps: int, resume: bool = False):
    """A fit of `max_steps` with the run folder's checkpoint, then the validation train_module runs after it."""
    settings = {"trainer.max_steps": max_steps, "trainer.max_epochs": -1}
    steps = Steps()
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=steps,
        callbacks=[
            StepCheckpoint(dirpath=folder, save_last=True, save_top_k=0, every_n_train_steps=100),
            RecordSettings(settings),
        ],
        limit_val_batches=1,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Line(), ckpt_path=str(folder / "last.ckpt") if resume else None)
    loss = trainer.callback_metrics.get("train/loss")
    trainer.validate(trainer.lightning_module, verbose=False)
    return (None if loss is None else float(loss)), steps.logged["val/loss"][-1]


def test_a_fit_resumed_at_its_end_ends_where_its_run_ended(tmp_path):
    fresh = fit(tmp_path, 3)
    assert fresh[0] is not None and fresh[1] == 3
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)[FINISHED_KEY] is True
    # Fit finds nothing left to train: Lightning logged no loss and validated at step 2.
    assert fit(tmp_path, 3, resume=True) == fresh


def test_only_a_finished_training_at_the_same_length_is_started_over_by_overwrite(tmp_path):
    fit(tmp_path, 3)
    ckpt = tmp_path / "last.ckpt"
    at = {length: OmegaConf.create({"trainer": {"max_steps": length, "max_epochs": -1}}) for length in (3, 5)}
    assert finished_training(ckpt, at[3])
    assert not finished_training(ckpt, at[5])  # training a finished run longer continues it
    checkpoint = torch.load(ckpt, weights_only=False)
    checkpoint[FINISHED_KEY] = False  # interrupted mid-run (a checkpoint from before the key: test_upgrade_reruns)
    torch.save(checkpoint, tmp_path / "other.ckpt")
    assert not finished_training(tmp_path / "other.ckpt", at[3])


def test_a_run_started_over_by_overwrite_gets_a_new_wandb_run(tmp_path):
    pytest.importorskip("wandb")
    from chipadapt.loggers.build import build_loggers
    from chipadapt.loggers.wandb import JobWandbLogger

    cfg = compose(["model=tiny", "logger=wandb"], tmp_path)  # resume=true: the folder's W&B run continues

    def continues(new_run: bool) -> bool:
        found = [x for x in build_loggers(cfg.logger, 0, new_run=new_run) if isinstance(x, JobWandbLogger)]
        return found[0]._continue_run

    assert continues(new_run=False) and not continues(new_run=True)


def rows(folder) -> list[dict]:
    """metrics.csv without the throughput, which differs from run to run."""
    with open(folder / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "train/tokens_per_s"} for row in csv.DictReader(handle)]


@pytest.mark.integration
def test_an_overwrite_rerun_of_a_completed_run_is_a_fresh_run(tmp_path):
    run = tmp_path / "run"
    args = [*TINY_FAST, "trainer.max_steps=3", f"hydra.run.dir={run}"]
    first = run_train(args)
    assert first.returncode == 0, first.stderr[-3000:]
    fresh = json.loads((run / "manifest.json").read_text())["metrics"]
    fresh_rows = rows(run)
    shutil.copy(run / "model" / "model.safetensors", tmp_path / "fresh.safetensors")
    again = run_train([*args, "overwrite=true"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" not in again.stdout + again.stderr  # trained again, not its finished checkpoint
    metrics = json.loads((run / "manifest.json").read_text())["metrics"]
    assert metrics["train_loss"] is not None and metrics["train_loss"] == fresh["train_loss"]
    assert metrics["after"] == fresh["after"]
    assert rows(run) == fresh_rows  # the final validation at step 3, as the fresh run logged it
    assert (run / "model" / "model.safetensors").read_bytes() == (tmp_path / "fresh.safetensors").read_bytes()
    from chipadapt.stages.resume_decision import resume_checkpoint

    # Other settings with overwrite=true: trained afresh too, not refused as a resume of other settings.
    assert (
        resume_checkpoint(compose([*TINY_FAST, "trainer.max_steps=3", "overwrite=true", "optim.lr=1e-2"], run), run)
        is None
    )
    # Not yet published (a preemption between the last checkpoint and the save): the requeued line resumes.
    (run / "model").rename(tmp_path / "published")
    resumed = resume_checkpoint(compose([*TINY_FAST, "trainer.max_steps=3", "overwrite=true"], run), run)
    assert resumed == str(run / "checkpoints" / "last.ckpt")
