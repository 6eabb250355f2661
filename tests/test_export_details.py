"""export.py's smaller promises, in-process: the stage's config.json records (a SteerLM run's attribute
order), the exported dtype, a checkpoint replaced while read tried again then exit 1, a full disk told as
an export's, and a mismatched checkpoint's error kept to one short line."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from chipadapt import checkpoint_export as ce
from chipadapt.errors import ChipadaptError
from chipadapt.steerlm.attribute_record import ORDER_KEY


def test_a_steerlm_runs_attribute_order_goes_into_the_exported_config():
    from transformers import LlamaConfig

    config = LlamaConfig()
    ce.with_stage_records(config, {"data": {"attributes": {"use": True, "order": ["quality", "toxicity"]}}})
    assert getattr(config, ORDER_KEY) == ["quality", "toxicity"]
    plain = LlamaConfig()
    ce.with_stage_records(plain, {"data": {"attributes": {"use": False, "order": ["quality"]}}})
    assert not hasattr(plain, ORDER_KEY)


def test_a_steerlm_runs_chat_template_goes_into_the_exported_config():
    """chat.py and bootstrap prompt an exported SteerLM model in the template it was trained in."""
    from transformers import LlamaConfig

    from chipadapt.steerlm.attribute_record import TEMPLATE_KEY

    template = {"_target_": "chipadapt.data.chat_templates.StringTemplate", "attribute_line": "<extra_id_2>{content}\n"}
    config = LlamaConfig()
    ce.with_stage_records(config, {"data": {"template": template, "attributes": {"use": True, "order": ["quality"]}}})
    assert getattr(config, TEMPLATE_KEY) == template


def test_dtype_is_checked_and_model_keys_are_refused():
    assert ce.export_dtype(OmegaConf.create({"dtype": None})) is None
    assert ce.export_dtype(OmegaConf.create({"dtype": "bfloat16"})) == "bfloat16"
    with pytest.raises(ChipadaptError, match="dtype: 'bf16' is not one of"):
        ce.export_dtype(OmegaConf.create({"dtype": "bf16"}))
    with pytest.raises(ChipadaptError, match="^model: export.py takes"):  # `+model.dtype=bfloat16` was ignored
        ce.refuse_model_settings(OmegaConf.create({"model": {"dtype": "bfloat16"}}))


def test_a_bf16_export_holds_the_bf16_of_the_fp32_weights(tmp_path):
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "fp32")
    ce.with_dtype(model, "bfloat16").save_pretrained(tmp_path / "bf16")
    full, half = load_file(tmp_path / "fp32" / "model.safetensors"), load_file(tmp_path / "bf16" / "model.safetensors")
    assert sorted(full) == sorted(half)
    for name in full:
        assert half[name].dtype == torch.bfloat16 and torch.equal(half[name], full[name].to(torch.bfloat16)), name
    assert '"bfloat16"' in (tmp_path / "bf16" / "config.json").read_text()


def job(tmp_path: Path) -> ce.ExportJob:
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"x")
    return ce.ExportJob(tmp_path, ckpt, {"config": {}}, 4, tmp_path / "out", tmp_path, {})


class Manifest:
    def add_input(self, key, path):
        return {"fingerprint": ce.fingerprint_input(path)["fingerprint"]}


def test_a_checkpoint_saved_over_while_read_is_read_again_then_exit_1(tmp_path, monkeypatch, capsys):
    from chipadapt.models import checkpoint_weights

    monkeypatch.setattr(ce, "READ_RETRY_S", 0)
    the_job = job(tmp_path)
    reads = []

    def saved_once(module, path, key):  # the run saves while the first read goes on
        reads.append(path)
        if len(reads) == 1:
            path.write_bytes(b"saved again")
        return {"global_step": 4}

    monkeypatch.setattr(checkpoint_weights, "load_module_weights", saved_once)
    fingerprint = ce.fingerprint_input(the_job.ckpt)["fingerprint"]
    assert ce.read_while_unchanged(None, the_job, fingerprint, Manifest())["global_step"] == 4
    assert len(reads) == 2

    monkeypatch.setattr(checkpoint_weights, "load_module_weights", lambda m, p, k: {"global_step": 6})
    with pytest.raises(SystemExit) as stop:
        ce.read_while_unchanged(None, the_job, fingerprint, Manifest())
    assert stop.value.code == 1
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and "the run is saving, now of step 6" in line


def test_a_full_disk_says_to_run_the_export_again(tmp_path, capsys):
    import errno

    err = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "model.safetensors"))
    with pytest.raises(SystemExit) as stop:
        ce.exit_if_disk_full(err, tmp_path / "out")
    line = capsys.readouterr().err.strip()
    assert stop.value.code == 1 and "run the export again" in line and "hydra.run.dir" not in line
    ce.exit_if_disk_full(OSError(errno.EACCES, "denied"), tmp_path)  # not a full disk: left to the caller


def test_a_checkpoint_of_another_model_is_named_by_its_first_missing_key():
    from chipadapt.models.checkpoint_weights import _first_problem

    keys = ", ".join(f'"model.layers.{i}.weight"' for i in range(200))
    err = RuntimeError(f"Error(s) in loading state_dict for M:\n\tMissing key(s) in state_dict: {keys}. ")
    assert _first_problem(err) == 'Missing key(s) in state_dict: "model.layers.0.weight" and 199 more'


def test_the_dtype_is_part_of_what_makes_an_export_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(ce, "fingerprint_input", lambda path: {"path": str(path), "fingerprint": "f"})
    base = job(tmp_path)
    record = SimpleNamespace(**{**base.__dict__, "dtype": "bfloat16"})
    assert ce.sources(base)["dtype"] is None and ce.sources(record)["dtype"] == "bfloat16"
