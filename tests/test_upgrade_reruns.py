"""A run folder left by an earlier release, rerun by this one (the upgrade trial). Its checkpoint lacks what
later releases record (whether its training was done, keys added since), and its manifest holds the folders
of the machine and checkout it ran in. `overwrite=true` over its finished run resumed it, trained 0 steps and
published the old weights again; resuming an augmented-tokenizer run was refused over keys it never had; and
the same command was refused over a moved cache or package folder. The checkpoints and manifests here are
this release's with the newer keys stripped, as an earlier release wrote them."""

import json

import pytest
import torch
from conftest import TINY_FAST, compose
from omegaconf import OmegaConf
from test_overwrite_rerun import fit

from chipadapt.errors import ChipadaptError
from chipadapt.finished_run import completed_record, what_changed
from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY, FINISHED_KEY
from chipadapt.stages.finished_checkpoint import finished_training
from chipadapt.stages.resume_settings import check_resume_settings, trajectory_settings


def length(max_steps: int, max_epochs: int):
    return OmegaConf.create({"trainer": {"max_steps": max_steps, "max_epochs": max_epochs}})


def earlier_checkpoint(out, steps: int = 3, recorded: dict | None = None, manifest: dict | None = None):
    """`out/checkpoints/last.ckpt` after `steps` steps without FINISHED_KEY; its settings `recorded` (None:
    none, as before settings were recorded); `out/manifest.json` as given."""
    fit(out / "checkpoints", steps)
    ckpt = out / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(ckpt, weights_only=False)
    checkpoint.pop(FINISHED_KEY)
    checkpoint.pop(CHECKPOINT_KEY)
    if recorded is not None:
        checkpoint[CHECKPOINT_KEY] = recorded
    torch.save(checkpoint, ckpt)
    if manifest is not None:
        (out / "manifest.json").write_text(json.dumps({"kind": "train", **manifest}))
    return ckpt


def test_a_checkpoint_of_an_earlier_release_at_its_last_step_is_finished(tmp_path):
    ckpt = earlier_checkpoint(tmp_path / "a", recorded={"trainer.max_steps": 3, "trainer.max_epochs": -1})
    assert finished_training(ckpt, length(3, -1))  # so overwrite=true trains afresh instead of resuming it
    assert not finished_training(ckpt, length(5, -1))  # trained longer: continued from it
    ckpt = earlier_checkpoint(tmp_path / "b", 2, recorded={"trainer.max_steps": 3, "trainer.max_epochs": -1})
    assert not finished_training(ckpt, length(3, -1))  # interrupted at step 2 of 3


def test_an_epoch_bounded_one_is_told_by_its_manifest_or_refused(tmp_path):
    recorded = {"trainer.max_steps": -1, "trainer.max_epochs": 1}
    config = {"trainer": {"max_steps": -1, "max_epochs": 1}}
    ckpt = earlier_checkpoint(tmp_path / "a", recorded=recorded, manifest={"status": "completed", "config": config})
    assert finished_training(ckpt, length(-1, 1))
    # The answer stays for the process: the attempt's manifest ("running") replaces the folder's before the
    # stage's runner asks again.
    (tmp_path / "a" / "manifest.json").write_text(json.dumps({"kind": "train", "status": "running", "config": config}))
    assert finished_training(ckpt, length(-1, 1))
    ckpt = earlier_checkpoint(tmp_path / "b", recorded=recorded, manifest={"status": "failed", "config": config})
    with pytest.raises(ChipadaptError, match="does not tell.*resume=false trains this run from the start"):
        finished_training(ckpt, length(-1, 1))
    # Older still, no settings recorded: the manifest's config gives the length.
    ckpt = earlier_checkpoint(
        tmp_path / "c", manifest={"status": "completed", "config": {"trainer": {"max_steps": 3, "max_epochs": -1}}}
    )
    assert finished_training(ckpt, length(3, -1))


def test_overwrite_over_an_earlier_release_finished_run_starts_over(tmp_path):
    from chipadapt.stages.resume_decision import resume_checkpoint

    out = tmp_path / "run"
    cfg = compose([*TINY_FAST, "trainer.max_steps=3", "overwrite=true"], out)
    earlier_checkpoint(out, recorded=trajectory_settings(cfg))
    (out / "model").mkdir()
    assert resume_checkpoint(cfg, out) is None  # it resumed the finished checkpoint and trained 0 steps


AUGMENTED = [*TINY_FAST, "tokenizer=augmented_small", "trainer.max_steps=3"]


def test_keys_added_since_read_at_their_earlier_meaning_and_the_refusal_gives_the_overrides(tmp_path):
    cfg = compose(AUGMENTED, tmp_path)
    earlier = {
        k: v
        for k, v in trajectory_settings(cfg).items()
        if k not in ("tokenizer.adapt.held_out", "tokenizer.adapt.stage")
    }
    torch.save({CHECKPOINT_KEY: earlier, "global_step": 2}, tmp_path / "last.ckpt")
    with pytest.raises(ChipadaptError) as err:
        check_resume_settings(tmp_path / "last.ckpt", cfg)
    assert "(tokenizer.adapt.held_out: None -> 0.15)" in str(err.value)  # tokens chosen without held-out docs
    assert "rerun with that run's settings (tokenizer.adapt.held_out=null) to resume it" in str(err.value)
    check_resume_settings(tmp_path / "last.ckpt", compose([*AUGMENTED, "tokenizer.adapt.held_out=null"], tmp_path))


EARLIER_COMMIT = "0123456789abcdef" * 2 + "01234567"  # the earlier release's


def earlier_manifest(out, config: dict, status: str = "completed"):
    (out / "model").mkdir(parents=True)
    record = {"kind": "train", "status": status, "config": config, "git": {"commit": EARLIER_COMMIT, "dirty": False}}
    (out / "manifest.json").write_text(json.dumps(record))


def moved(config: dict, cfg) -> dict:
    """`config` as another machine and checkout recorded it: another cache and package folder."""
    from importlib import resources

    text = json.dumps(config).replace(str(resources.files("chipadapt") / "resources"), "/old/src/chipadapt/resources")
    return json.loads(text.replace(cfg.paths.cache_dir, "/old/cache"))


def test_the_same_run_with_folders_moved_is_the_same_run(tmp_path):
    out = tmp_path / "run"
    cfg = compose(AUGMENTED, out)
    config = moved(OmegaConf.to_container(cfg, resolve=True), cfg)
    assert "/old/cache" in json.dumps(config) and "/old/src/chipadapt/resources" in json.dumps(config)
    del config["tokenizer"]["adapt"]["stage"]  # an earlier release had none; it built in any stage
    earlier_manifest(out, config)
    assert completed_record(cfg, out) is not None
    assert "with these settings but other inputs" in what_changed(cfg, out)


def test_validation_and_version_changes_are_named(tmp_path):
    out = tmp_path / "run"
    cfg = compose(AUGMENTED, out)
    config = moved(OmegaConf.to_container(cfg, resolve=True), cfg)
    config["data"]["val_max_sequences"] = 16  # retired since
    del config["data"]["val_max_bytes"]
    del config["tokenizer"]["adapt"]["held_out"]
    earlier_manifest(out, config)
    # The completed run's metrics were measured on other validation text: not this run's, so not passed.
    assert completed_record(cfg, out) is None
    said = what_changed(cfg, out)
    assert "data.val_max_sequences" in said and "tokenizer.adapt.held_out: None -> 0.15" in said
    assert "cache" not in said and "resources" not in said and "adapt.stage" not in said
    assert "made by another chipadapt version: data.val_max_sequences no longer a setting" in said


def test_a_retriever_run_is_not_compared_on_the_data_it_never_reads(tmp_path):
    out = tmp_path / "run"
    cfg = compose(["stage=retriever"], out)
    config = moved(OmegaConf.to_container(cfg, resolve=True), cfg)
    config["data"]["val_max_sequences"] = 16
    earlier_manifest(out, config)
    assert completed_record(cfg, out) is not None
    config["optim"]["lr"] = 1.0
    (out / "manifest.json").write_text(json.dumps({"kind": "train", "status": "completed", "config": config}))
    assert completed_record(cfg, out) is None
