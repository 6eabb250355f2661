"""A resume that validates on other held-out text says so, with its step, and records it where it
outlives the log (the trial: a run resumed with another data.val_max_bytes logged val/domain/bpb 3.1596
at step 207 on the old text, then 3.2297 at step 220 on the new one, a falling curve that looked like a
regression; the only message said that the starting model's validation was not reported)."""

import json
import logging
from types import SimpleNamespace

from omegaconf import OmegaConf

from chipadapt.stages.common import StartingMetrics

OLD = {"data.val_fraction": 0.15, "data.val_max_bytes": 32768, "trainer.limit_val_batches": None}
NEW = {**OLD, "data.val_max_bytes": 8192}


class Manifest:
    def __init__(self):
        self.data = {"data": {}}

    def update(self, section, values):
        self.data[section].update(values)


def resumed(state: dict, settings: dict, step: int) -> tuple[StartingMetrics, Manifest]:
    """A StartingMetrics of the resumed attempt, restored from `state`, at its training start."""
    callback, manifest = StartingMetrics(settings), Manifest()
    callback.manifest = manifest
    callback.load_state_dict(state)
    callback.on_train_start(SimpleNamespace(global_step=step, is_global_zero=True), None)
    return callback, manifest


def test_a_resume_on_other_validation_text_is_said_and_recorded_with_its_step(caplog):
    first = StartingMetrics(OLD)
    first.values = {"domain": {"bpb": 4.7}}
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint carries
    with caplog.at_level(logging.WARNING, logger="chipadapt.stages.common"):
        callback, manifest = resumed(state, NEW, 207)
    told = [r.getMessage() for r in caplog.records if "validation text changed" in r.getMessage()]
    assert told == [
        "the validation text changed at the resumed step 207 (data.val_max_bytes: 32768 -> 8192): the val/ "
        "figures logged before this resume (steps up to 207) and those logged after it were read on other "
        "texts and are not comparable"
    ]
    change = {"step": 207, "changed": {"data.val_max_bytes": [32768, 8192]}}
    assert manifest.data["data"]["validation_changes"] == [change]
    assert callback.values == {}  # the starting model's validation, read on the old text, is not reported

    # A later resume with the same settings: nothing new to say, but its new manifest keeps the record.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="chipadapt.stages.common"):
        _, later = resumed(json.loads(json.dumps(callback.state_dict())), NEW, 300)
    assert not [r for r in caplog.records if "validation text changed" in r.getMessage()]
    assert later.data["data"]["validation_changes"] == [change]


def test_a_checkpoint_of_an_older_version_names_its_retired_key():
    # Written before data.val_max_bytes: its settings hold data.val_max_sequences, and no val_max_bytes.
    old = {"data.val_fraction": 0.15, "data.val_max_sequences": 16, "trainer.limit_val_batches": None}
    state = {"before": {"domain": {"bpb": 4.7}}, "settings": old, "items": {}}
    _, manifest = resumed(state, OLD, 207)
    assert manifest.data["data"]["validation_changes"] == [
        {"step": 207, "changed": {"data.val_max_bytes": [None, 32768], "data.val_max_sequences": [16, None]}}
    ]


def test_a_resume_on_the_same_text_records_nothing():
    state = json.loads(json.dumps(StartingMetrics(OLD).state_dict()))
    _, manifest = resumed(state, dict(OLD), 207)
    assert "validation_changes" not in manifest.data["data"]


def test_compare_repeats_the_change_of_a_compared_run(tmp_path, caplog):
    from chipadapt.eval.compare import compare

    run = tmp_path / "run"
    run.mkdir()
    change = {"step": 207, "changed": {"data.val_max_bytes": [32768, 8192]}}
    manifest = {
        "kind": "train",
        "status": "completed",
        "overrides": ["data.val_max_bytes=8192"],
        "config": {"data": {"seq_len": 64, "val_max_bytes": 8192}},
        "data": {"val_text": None, "validation_changes": [change]},
        "metrics": {"after": {"domain": {"bpb": 3.2297}}},
        "results": {},
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "cmp"
    cfg = {"runs": [str(run)], "labels": None, "metrics": ["val/domain/bpb"], "x": None, "output": str(out)}
    cfg.update(overwrite=True, paths={"output_dir": str(out)}, max_plot_metrics=9)
    with caplog.at_level(logging.WARNING, logger="chipadapt.eval.compare"):
        compare(OmegaConf.create(cfg))
    said = [r.getMessage() for r in caplog.records if "validation text changed" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(
        "data.val_max_bytes=8192: the validation text changed at the resumed step 207"
    )


def test_a_resume_across_a_scoring_rule_says_the_rule_changed_not_the_text():
    from chipadapt.validation_change import validation_change_message

    # Before, every change read "the validation text changed", the text being the same.
    rule = validation_change_message({"step": 5, "changed": {"byte_count": [None, "piece_utf8"]}})
    assert rule.startswith("the validation scoring rule changed at the resumed step 5 (byte_count: None -> ")
    assert "were scored by other rules and are not comparable" in rule
    both = {"byte_count": [None, "piece_utf8"], "data.val_max_bytes": [32768, 8192]}
    assert validation_change_message({"step": 5, "changed": both}).startswith(
        "the validation text and its scoring rule changed"
    )
