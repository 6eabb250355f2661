"""The reproduction ledger stamps each step with the conversion version of the GGUF its model is converted
from (code_versions.py): a command-r model's steps converted by version 2 run again, a SmolLM2 one's
(`smollm`) stay done. Before, every ledger stamped conversion 2, whatever the model."""

from omegaconf import OmegaConf

import chipadapt.reproduce.ledger as ledger_module
import chipadapt.reproduce.run as run_module
from chipadapt.reproduce.ledger import Ledger
from chipadapt.reproduce.runner import plan
from chipadapt.reproduce.steps import Step

STEPS = [Step("tokenizer", "train.py", ("stage=tokenizer",), "s")]
GGUF_SOURCE = {
    "_target_": "chipadapt.models.gguf_import.GgufPackageModel",
    "package": "some_pkg",
    "gguf_file": "m.gguf",
}


def model_cfg(tmp_path, path=None):
    source = {**GGUF_SOURCE, "cache_dir": str(tmp_path / "cache")}
    return OmegaConf.create({"model": {"path": path, "source": source}})


def test_the_stamp_carries_the_conversion_version_of_the_models_gguf(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "package_folder", lambda package: tmp_path)
    monkeypatch.setattr(run_module, "gguf_pre_tokenizer_name", lambda path: "command-r")
    assert run_module.model_pre_tokenizer(model_cfg(tmp_path)) == "command-r"
    assert run_module.model_pre_tokenizer(model_cfg(tmp_path, path=str(tmp_path))) is None  # a folder: no GGUF

    monkeypatch.setattr(ledger_module, "_model_pre_tokenizer", None)
    ledger = Ledger(tmp_path / "steps.json")
    ledger.start("tokenizer", STEPS[0].command(tmp_path), tmp_path / "log")
    ledger.finish("tokenizer", "completed", 1.0, 0)
    STEPS[0].folder(tmp_path).mkdir()
    assert ledger.records["tokenizer"]["code_versions"]["conversion"] == 2
    # The same reproduction of a command-r model, now that its conversion is version 3: run again.
    ledger_module.use_model_pre_tokenizer("command-r")
    ledger = Ledger(tmp_path / "steps.json")
    assert [a for _, a in plan(STEPS, ledger, tmp_path, set(), set())] == ["rerun"]
    assert ledger.other_code("tokenizer") == "conversion v2"
    assert ledger_module.now_versions().startswith("conversion v3")
    ledger_module.use_model_pre_tokenizer("smollm")  # SmolLM2's: converted as before, stays done
    assert [a for _, a in plan(STEPS, Ledger(tmp_path / "steps.json"), tmp_path, set(), set())] == ["skip"]
