"""One reading of a run's settings for the resume check, the completed-run check and the starting validation
(run_settings). The review of the upgrade changes found them apart: a config group switched by the same
code was called a change of chipadapt's version; a resume refused over a group switch suggested overrides
that were refused again; a shared-data folder reached through a symlink dropped the starting validation as
"other validation text"; a preempted retriever run was refused over DAPT data and a tokenizer it never
reads; SFT restated eval.eda_script.eval_fraction as 0.2 in two places."""

import json

import pytest
import torch
from conftest import TINY_FAST, compose
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.finished_run import completed_record, settings, what_changed
from chipadapt.manifest import git_state
from chipadapt.run_settings import by_name, named_folders
from chipadapt.stages.common import StartingMetrics, validation_folders, validation_settings
from chipadapt.stages.resume_settings import CHECKPOINT_KEY, check_resume_settings, trajectory_settings


def completed_manifest(out, cfg, commit: str | None, overrides: list[str] = ()) -> None:
    (out / "model").mkdir(parents=True, exist_ok=True)
    record = {
        "kind": "train",
        "status": "completed",
        "overrides": list(overrides),
        "git": {"commit": commit, "dirty": False},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    (out / "manifest.json").write_text(json.dumps(record))


def checkpoint(out, recorded: dict):
    ckpt = out / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({CHECKPOINT_KEY: recorded, "global_step": 2}, ckpt)
    return ckpt


def test_a_group_switched_by_the_same_code_is_the_users_change_not_a_version_change(tmp_path):
    out = tmp_path / "run"
    before = compose([*TINY_FAST, "optim=adamw_cosine"], out)
    completed_manifest(out, before, git_state()["commit"])
    said = what_changed(compose([*TINY_FAST, f"+data.sources.mine.path={tmp_path / 'mine.jsonl'}"], out), out)
    assert "optim.scheduler._target_" in said and "optim.name" in said
    assert "version" not in said and "no longer a setting" not in said and "renamed" not in said

    # Made by other code: said, but a key only one side has is no version change unless the version made it one.
    completed_manifest(out, before, "0" * 40)
    said = what_changed(compose(TINY_FAST, out), out)
    assert said.endswith("(the run was made by another chipadapt version)")


def test_a_resume_refused_over_a_switched_group_points_to_the_run_s_own_overrides(tmp_path):
    out = tmp_path / "run"
    ckpt = checkpoint(out, trajectory_settings(compose([*TINY_FAST, "optim=adamw_cosine"], out)))
    completed_manifest(
        out, compose([*TINY_FAST, "optim=adamw_cosine"], out), None, ["model=tiny", "optim=adamw_cosine"]
    )
    with pytest.raises(ChipadaptError) as refused:
        check_resume_settings(ckpt, compose(TINY_FAST, out))
    said = str(refused.value)
    # The leaf overrides of the keys this config has would be refused again over optim.scheduler.*.
    assert "optim.name=adamw_cosine" not in said
    assert f"its overrides, as {out / 'manifest.json'} records them: model=tiny optim=adamw_cosine" in said

    # Where the overrides give every refused key back, they are the answer.
    ckpt = checkpoint(out, trajectory_settings(compose([*TINY_FAST, "optim.lr=0.002"], out)))
    with pytest.raises(
        ChipadaptError, match=r"that run's settings \(optim.lr=0.002 optim.optimizer.lr=0.002\) to resume"
    ):
        check_resume_settings(ckpt, compose(TINY_FAST, out))


def test_the_starting_validation_reads_its_folders_by_name(tmp_path):
    real = tmp_path / "shared"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    val = {"held": {"path": "${paths.shared_data}/held.jsonl"}}

    def validation(shared):
        return OmegaConf.create(
            {"paths": {"shared_data": str(shared)}, "data": {"val_fraction": 0.1, "val_sources": val}, "trainer": {}}
        )

    first = StartingMetrics(validation_settings(validation(real)), validation_folders(validation(real)))
    first.values = {"held": {"loss": 2.0}}
    through_link = StartingMetrics(validation_settings(validation(tmp_path / "link")))
    through_link.load_state_dict(first.state_dict())
    assert through_link.values == {"held": {"loss": 2.0}}

    # A checkpoint of an earlier version recorded the resolved path, of the folder or of another install's
    # package: read by this run's folders, the same text.
    state = first.state_dict()
    for recorded in (f"{real}/held.jsonl", "/old/src/chipadapt/resources/sample_corpus"):
        state["settings"] = {**state["settings"], "data.val_sources": {"held": {"path": recorded}}}
        shared = real if recorded.startswith(str(real)) else "/nowhere"
        cfg = validation(shared)
        if shared == "/nowhere":
            cfg.data.val_sources.held.path = "${chipadapt_resource:sample_corpus}"
        resumed = StartingMetrics(validation_settings(cfg), validation_folders(cfg))
        resumed.load_state_dict(state)
        assert resumed.values == {"held": {"loss": 2.0}}, recorded


@pytest.mark.parametrize("stage", ["retriever", "reranker"])
def test_the_encoders_are_not_compared_on_data_or_a_tokenizer_they_never_read(tmp_path, stage):
    out = tmp_path / "run"
    given = [f"stage={stage}"] + (
        ["reranker.train_file=/runs/retriever/synthetic/train.jsonl"] if stage == "reranker" else []
    )
    earlier = compose([*given, "tokenizer=augmented", "data.val_fraction=0.3"], out)
    now = compose(given, out)
    recorded = trajectory_settings(earlier)
    assert not any(key.startswith(("data.", "tokenizer.")) for key in recorded)
    check_resume_settings(checkpoint(out, recorded), now)  # resumes
    # A checkpoint of an earlier version recorded both sections (and the corpora's content): still resumes.
    older = {**recorded, "data.val_fraction": 0.3, "tokenizer.name": "augmented", "data.sources.x.content": "f"}
    check_resume_settings(checkpoint(out, older), now)
    completed_manifest(out, earlier, git_state()["commit"])
    assert completed_record(now, out) is not None


def test_sft_excludes_the_one_split_eval_eda_script_scores(tmp_path):
    for stage in ("sft", "steerlm"):
        cfg = compose([f"stage={stage}", "eval.eda_script.eval_fraction=0.3"], tmp_path / stage)
        held_out = cfg.data.val_sources.eda_heldout.only_eval_split.fraction
        assert held_out == 0.3 and cfg.eval.eda_script.eval_fraction == 0.3
        if stage == "sft":
            assert cfg.data.sources.eda_scripts.exclude_eval_split.fraction == 0.3
        # The composed evaluation is no setting of the run: its fraction is compared where the data uses it.
        for found in (trajectory_settings(cfg), settings(OmegaConf.to_container(cfg, resolve=True))):
            assert not any(key.startswith("eval.") for key in found)
            assert found["data.val_sources.eda_heldout.only_eval_split.fraction"] == 0.3


def test_a_short_relative_folder_is_named_only_where_a_value_is_that_folder_or_inside_it():
    # paths.shared_data=d (relative, from the folder the job started in): the letter d of other values, and
    # a folder d2 beside it, are not that folder; replaced as text, "dapt" read "${paths.shared_data}apt".
    folders = named_folders({"shared_data": "d", "cache_dir": "cache/"})
    named = {
        "stage.name": "dapt",
        "data.sources.mine.path": "d/held.jsonl",
        "data.sources.other.path": "d2/held.jsonl",
        "root": "d",
        "list": ["x=d/a", "d", "other/d/a", "cache/models", "cache"],
        "already": "${paths.shared_data}/held.jsonl",
    }
    assert by_name(named, folders) == {
        "stage.name": "dapt",
        "data.sources.mine.path": "${paths.shared_data}/held.jsonl",
        "data.sources.other.path": "d2/held.jsonl",
        "root": "${paths.shared_data}",
        "list": [
            "x=${paths.shared_data}/a",
            "${paths.shared_data}",
            "other/d/a",
            "${paths.cache_dir}/models",
            "${paths.cache_dir}",
        ],
        # A checkpoint's settings, named when recorded, are read by name again on resume: unchanged.
        "already": "${paths.shared_data}/held.jsonl",
    }


def test_a_run_whose_shared_data_is_a_short_relative_folder_resumes_its_starting_validation(tmp_path):
    def validation(shared):
        val = {"held": {"path": "${paths.shared_data}/held.jsonl"}}
        return OmegaConf.create(
            {"paths": {"shared_data": shared}, "data": {"val_fraction": 0.1, "val_sources": val}, "trainer": {}}
        )

    first = StartingMetrics(validation_settings(validation("d")), validation_folders(validation("d")))
    first.values = {"held": {"loss": 2.0}}
    resumed = StartingMetrics(validation_settings(validation("d")), validation_folders(validation("d")))
    resumed.load_state_dict(first.state_dict())
    assert resumed.values == {"held": {"loss": 2.0}}
    # Recorded on a machine whose shared data is elsewhere, resumed where it is `d`: the same text.
    elsewhere = StartingMetrics(validation_settings(validation("/mnt/shared/data")))
    elsewhere.values = {"held": {"loss": 2.0}}
    resumed.load_state_dict(elsewhere.state_dict())
    assert resumed.values == {"held": {"loss": 2.0}}
