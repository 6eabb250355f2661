"""A reproduction step recorded with other code versions (another GGUF conversion, another tokenizer
selection) is run again, not skipped, even where its command does not name the converted folder; the
dry run says why."""

import json

import chipadapt.code_versions as code_versions
from chipadapt.reproduce.ledger import Ledger
from chipadapt.reproduce.run import print_plan
from chipadapt.reproduce.runner import plan
from chipadapt.reproduce.steps import Step

STEPS = [Step("tokenizer", "train.py", ("stage=tokenizer",), "s"), Step("eval_base", "evaluate.py", ("x=1",), "s")]


def record_all(tmp_path) -> Ledger:
    ledger = Ledger(tmp_path / "steps.json")
    for s in STEPS:
        ledger.start(s.name, s.command(tmp_path), tmp_path / "log")
        ledger.finish(s.name, "completed", 1.0, 0)
        s.folder(tmp_path).mkdir()
    return ledger


def test_a_step_recorded_with_another_conversion_is_rerun_and_the_dry_run_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(code_versions, "CONVERSION_VERSION", 1)
    record_all(tmp_path)
    assert [a for _, a in plan(STEPS, Ledger(tmp_path / "steps.json"), tmp_path, set(), set())] == ["skip", "skip"]
    monkeypatch.setattr(code_versions, "CONVERSION_VERSION", 2)
    ledger = Ledger(tmp_path / "steps.json")
    assert [a for _, a in plan(STEPS, ledger, tmp_path, set(), set())] == ["rerun", "rerun"]
    assert ledger.other_code("tokenizer") == "conversion v1"
    print_plan(STEPS, tmp_path, set(), set(), models=False)
    assert "rerun: recorded with conversion v1; now conversion v2" in capsys.readouterr().out
    # Run again, it is stamped with the versions of now and done.
    ledger.start("tokenizer", STEPS[0].command(tmp_path), tmp_path / "log")
    ledger.finish("tokenizer", "completed", 1.0, 0)
    assert [a for _, a in plan(STEPS, ledger, tmp_path, set(), set())] == ["skip", "rerun"]


def test_a_record_from_before_the_stamp_is_not_done_nor_resumed(tmp_path, monkeypatch):
    ledger = record_all(tmp_path)
    records = json.loads((tmp_path / "steps.json").read_text())
    for record in records.values():
        del record["code_versions"]
    records["eval_base"]["status"] = "interrupted"  # same command: would resume the old folder
    (tmp_path / "steps.json").write_text(json.dumps(records))
    ledger = Ledger(tmp_path / "steps.json")
    assert [a for _, a in plan(STEPS, ledger, tmp_path, set(), set())] == ["rerun", "rerun"]
    assert ledger.other_code("eval_base") == "no code versions"
