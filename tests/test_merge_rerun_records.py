"""merge.py run again where an earlier merge lives: what it refuses is refused before the job records
anything (the earlier run's manifest, logger files and .hydra/ stay as they were), `overwrite` is no
setting of the merge, a base model the method does not read is said to be unread, and a LoRA adapter
given as a model is named as one. The same through merge.py's command line (a sweep of other lambdas in
the same sweep folder refused before its first job, a single run refused in a job's folder putting back
its .hydra/) is test_merge_sweep_cli.py::test_a_sweep_run_again_goes_on_from_its_jobs_and_refuses_other_settings,
on the sweep that file makes."""

import json
import logging
from pathlib import Path

import pytest
from helpers.merge_jobs import merge_cfg, tiny_pair

from chipadapt.errors import ChipadaptError
from chipadapt.merge.run import run


@pytest.fixture
def pair(tmp_path):
    return tiny_pair(tmp_path)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_refused_rerun_leaves_the_run_folder_as_it_was_and_names_what_differs(tmp_path, pair):
    """The trial's job 2: a finished lam=1 job's folder given lam=0.7. Refused at the merge, the job had
    rewritten manifest.json (`failed`, lam 0.7), hparams.yaml and metrics.csv beside the lam=1 model."""
    chip, instruct = pair
    job = tmp_path / "sweep" / "2"
    run(merge_cfg(chip, instruct, job, "merge.lam=1"))
    before = snapshot(job)
    assert json.loads((job / "manifest.json").read_text())["status"] == "completed"
    with pytest.raises(ChipadaptError) as refused:
        run(merge_cfg(chip, instruct, job, "merge.lam=0.7"))
    assert snapshot(job) == before
    message = str(refused.value)
    assert message.startswith(f"output: {job / 'model'} holds a previous merge output")
    assert "merged with other settings: merge.lam: 1 -> 0.7" in message
    assert "overwrite=true replaces it, or another hydra.run.dir keeps both" in message


def test_overwrite_is_no_setting_of_the_merge(tmp_path, pair):
    """After `overwrite=true`, the same command without it is the same job: passed as done, not refused
    for `holding a previous merge output` (overwrite was compared as a setting)."""
    chip, instruct = pair
    job = tmp_path / "run"
    first = run(merge_cfg(chip, instruct, job, "merge.lam=0.4", "overwrite=true"))
    model = job / "model" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    again = run(merge_cfg(chip, instruct, job, "merge.lam=0.4"))
    assert again["lam"] == first["lam"] == 0.4 and model.stat().st_mtime_ns == stamp
    # Other settings are still refused, naming the one change (not overwrite).
    with pytest.raises(ChipadaptError, match=r"merged with other settings: merge.lam: 0.4 -> 0.5; overwrite=true"):
        run(merge_cfg(chip, instruct, job, "merge.lam=0.5"))


def test_a_base_the_method_does_not_read_is_said_once_and_not_recorded_as_an_input(tmp_path, pair, caplog):
    chip, instruct = pair
    other = tmp_path / "other_architecture"
    other.mkdir()
    config = json.loads((chip / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 7}))
    (other / "model.safetensors").write_bytes((chip / "model.safetensors").read_bytes())
    caplog.set_level(logging.WARNING, logger="chipadapt.merge.run")
    for lam in (0.2, 0.8):  # two jobs of a sweep: said once
        run(merge_cfg(chip, instruct, tmp_path / f"run{lam}", f"merge.lam={lam}", f"models.base={other}"))
    told = [r.getMessage() for r in caplog.records if "models.base" in r.getMessage()]
    assert len(told) == 1 and "merge=chipalign reads no base model" in told[0] and str(other) in told[0]
    inputs = json.loads((tmp_path / "run0.2" / "manifest.json").read_text())["inputs"]
    assert "models.base" not in inputs and {"models.chip", "models.instruct"} <= inputs.keys()
    # A method that reads it checks it like the other inputs.
    with pytest.raises(ChipadaptError, match=r"models.base: config.num_hidden_layers=7 differs"):
        run(merge_cfg(chip, instruct, tmp_path / "ties", "merge=ties", f"models.base={other}"))


def test_a_lora_adapter_is_named_as_one_with_the_merged_model_beside_it(tmp_path):
    from chipadapt.merge.io import SafetensorsModel
    from chipadapt.models.hf_folder import check_hf_folder

    run_dir = tmp_path / "sft_lora"
    adapter = run_dir / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    for check in (
        lambda: SafetensorsModel(str(adapter), "models.instruct"),
        lambda: check_hf_folder(adapter, "model.path"),
    ):
        with pytest.raises(ChipadaptError, match=r"is a LoRA adapter \(adapter_config.json, no config.json\)") as err:
            check()
        assert "give a whole model: train.py saves a LoRA run's adapters merged" in str(err.value)
    (run_dir / "model").mkdir()
    (run_dir / "model" / "config.json").write_text("{}")
    with pytest.raises(
        ChipadaptError, match=rf"give the merged model of its run instead: models.chip={run_dir / 'model'}$"
    ):
        SafetensorsModel(str(adapter), "models.chip")
    with pytest.raises(ChipadaptError, match=r"is not a Hugging Face model folder \(no config.json\)"):
        SafetensorsModel(str(tmp_path), "models.chip")  # neither a model nor an adapter: as before


def test_a_merge_recorded_before_the_chat_and_non_float_keys_is_read_at_their_earlier_meaning(tmp_path, pair):
    """A merge of an earlier release recorded neither merge.chat_template_from nor merge.non_float_from: it
    took the chip model's tokenizer files whole, template included, so it is the job of
    merge.chat_template_from=chip, and the new default (instruct) is a change named as such."""
    from omegaconf import OmegaConf

    from chipadapt.merge.job_settings import changed_settings, same_settings

    chip, instruct = pair
    now = OmegaConf.to_container(merge_cfg(chip, instruct, tmp_path / "run"), resolve=True)
    earlier = json.loads(json.dumps(now))
    for key in ("chat_template_from", "non_float_from"):
        del earlier["merge"][key]
    assert changed_settings(earlier, now) == ["merge.chat_template_from: 'chip' -> 'instruct'"]
    as_before = OmegaConf.to_container(
        merge_cfg(chip, instruct, tmp_path / "run", "merge.chat_template_from=chip"), resolve=True
    )
    assert same_settings(earlier, as_before)


def test_the_sweep_preflight_and_the_job_read_a_key_absent_from_the_record_alike():
    """A key null now and absent from an earlier record: no change for either question (the preflight
    asks changed_settings, the job same_settings); they disagreed, and a job the preflight passed was
    refused partway through the sweep."""
    from chipadapt.merge.job_settings import changed_settings, same_settings

    recorded = {"merge": {"lam": 0.5, "chat_template_from": "chip"}, "models": {"chip": "a", "instruct": "b"}}
    now = {**recorded, "eval": {"perplexity": {"splits": {"domain": {"held_out": None}}}}}
    assert changed_settings(recorded, now) == []
    assert same_settings(recorded, now)
