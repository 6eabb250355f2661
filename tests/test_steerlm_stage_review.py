"""What a review of stage=annotate and stage=bootstrap found, in-process and without a model:
- a completed output folder of an earlier version (its manifest has no fingerprint of the file) was
  refused, even for the very same command, as "a run that failed or was stopped";
- bootstrap's settings were checked against data.attributes.order before the run, not against the order
  the SteerLM model at model.path records it was trained with (what the run samples with);
- annotate.eda_eval_split.fraction restated eval.eda_script.eval_fraction: changing the latter left
  annotate leaving out another split than the one eval=eda_script scores."""

import json

import pytest
from conftest import TINY_FAST, compose
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError

STAGES = {  # stage: (the file it writes in its folder, the override that lets its config compose)
    "annotate": ("annotated.jsonl", "annotate.attribute_model=a"),
    "bootstrap": ("bootstrap.jsonl", "bootstrap.attribute_model=a"),
}


def completed_folder(tmp_path, stage: str, results: dict | None):
    """A folder as a completed run left it; `results` None: as an earlier version wrote it (no record)."""
    name, required = STAGES[stage]
    out = tmp_path / stage
    out.mkdir()
    (out / name).write_text('{"id": "c0"}\n')
    cfg = compose([f"stage={stage}", *TINY_FAST, required], out)
    record = {"kind": "train", "status": "completed", "config": OmegaConf.to_container(cfg, resolve=True)}
    record["metrics"] = {"output": str(out / name)}
    if results is not None:
        record["results"] = results
    (out / "manifest.json").write_text(json.dumps(record))
    return out, cfg


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_completed_output_of_an_earlier_version_is_refused_as_that(tmp_path, stage):
    from chipadapt.pipeline import train

    out, cfg = completed_folder(tmp_path, stage, results=None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ChipadaptError) as refused:
        train(cfg)  # the very same command
    message = str(refused.value)
    assert "of an earlier chipadapt version" in message and "overwrite=true replaces it" in message
    assert "failed" not in message and "\n" not in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written, its manifest included


def test_an_output_changed_after_its_run_completed_is_told_as_that(tmp_path):
    from chipadapt.stages.bootstrap import finished_before

    recorded = {"output": {"path": str((tmp_path / "bootstrap" / "bootstrap.jsonl").resolve()), "fingerprint": "x"}}
    out, cfg = completed_folder(tmp_path, "bootstrap", results=recorded)
    with pytest.raises(ChipadaptError, match=r"bootstrap.jsonl exists, changed since the completed run"):
        finished_before(cfg, out)
    overwrite = compose(["stage=bootstrap", *TINY_FAST, "bootstrap.attribute_model=a", "overwrite=true"], out)
    assert finished_before(overwrite, out) is None


def bootstrap_config(tmp_path, model, settings: str):
    overrides = [
        "stage=bootstrap",
        *TINY_FAST,
        "bootstrap.attribute_model=a",
        f"bootstrap.attribute_settings={settings}",
    ]
    return compose([*overrides, f"model.path={model}"], tmp_path / "run")


def test_bootstrap_settings_are_checked_against_the_order_the_model_records(tmp_path):
    from chipadapt.config_schema import validate

    model = tmp_path / "steer_model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"steerlm_attribute_order": ["tone", "quality"]}))
    validate(bootstrap_config(tmp_path, model, "[{tone: 3, quality: 4}]"))  # not in data.attributes.order
    with pytest.raises(ChipadaptError, match=r"attribute_settings\[0\]\.humor: .*\(one of tone, quality\)"):
        validate(bootstrap_config(tmp_path, model, "[{humor: 1, quality: 4}]"))

    (model / "config.json").write_text("{}")  # saved before the record was: data.attributes.order
    validate(bootstrap_config(tmp_path, model, "[{humor: 1, quality: 4}]"))
    with pytest.raises(ChipadaptError, match=r"attribute_settings\[0\]\.tone: not an attribute"):
        validate(bootstrap_config(tmp_path, model, "[{tone: 3, quality: 4}]"))


@pytest.mark.parametrize("fraction, left_out", [("0.3", {"fraction": 0.3}), ("null", None)])
def test_annotate_leaves_out_the_split_eval_eda_script_scores(tmp_path, fraction, left_out):
    from chipadapt.stages.annotate import input_spec

    cfg = compose(
        ["stage=annotate", *TINY_FAST, "annotate.attribute_model=a", f"eval.eda_script.eval_fraction={fraction}"],
        tmp_path,
    )
    spec, _ = input_spec(cfg.annotate)  # annotate.input: the EDA corpus by default
    assert spec.get("exclude_eval_split") == left_out


def test_annotate_reruns_compare_the_fraction_annotate_resolved_not_the_evaluations_other_settings(tmp_path):
    from chipadapt.manifest import fingerprint_input
    from chipadapt.stages.annotate import finished_before

    out, cfg = completed_folder(tmp_path, "annotate", results=None)
    record = json.loads((out / "manifest.json").read_text())
    record["results"] = {"output": fingerprint_input(out / "annotated.jsonl")}
    record["config"].pop("eval")  # as the version before eval.eda_script was composed into annotate's config
    (out / "manifest.json").write_text(json.dumps(record))
    same = ["stage=annotate", *TINY_FAST, "annotate.attribute_model=a"]
    assert finished_before(cfg, out) == record["metrics"]
    assert finished_before(compose([*same, "eval.eda_script.batch_size=3"], out), out) == record["metrics"]
    with pytest.raises(ChipadaptError, match=r"other settings \(annotate.eda_eval_split.fraction: 0.2 -> 0.3\)"):
        finished_before(compose([*same, "eval.eda_script.eval_fraction=0.3"], out), out)


def test_another_file_at_the_output_path_is_not_called_the_completed_runs_file_changed(tmp_path):
    """annotate.output naming a file the completed run never wrote: before, "changed since the completed run
    in this folder wrote it", which it did not."""
    from chipadapt.stages.output_rerun import finished_or_refused

    recorded = {"output": {"path": str((tmp_path / "annotate" / "annotated.jsonl").resolve()), "fingerprint": "x"}}
    out, cfg = completed_folder(tmp_path, "annotate", results=recorded)
    someone_elses = tmp_path / "someone_elses.jsonl"
    someone_elses.write_text('{"id": "u0"}\n')
    with pytest.raises(ChipadaptError) as refused:
        finished_or_refused(cfg, out, someone_elses, "annotate.output")
    assert "changed since" not in str(refused.value) and "or another run's" in str(refused.value)


def test_an_annotate_folder_made_with_an_augmented_tokenizer_passes_the_same_command_without_it(tmp_path):
    """Annotate never read the tokenizer group and now refuses tokenizer=augmented: a folder recorded with it
    was refused over tokenizer.* for the command that can still be given."""
    from chipadapt.manifest import fingerprint_input
    from chipadapt.stages.output_rerun import finished_or_refused

    out, cfg = completed_folder(tmp_path, "annotate", results=None)
    record = json.loads((out / "manifest.json").read_text())
    record["config"]["tokenizer"] = {"name": "augmented", "adapt": {"domain_vocab_size": 32000}}
    record["results"] = {"output": fingerprint_input(out / "annotated.jsonl")}
    (out / "manifest.json").write_text(json.dumps(record))
    assert finished_or_refused(cfg, out, out / "annotated.jsonl", "hydra.run.dir") == record["metrics"]
