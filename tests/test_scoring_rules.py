"""Runs whose token bytes were counted by another rule (before: a piece decoded alone, which counted a
SentencePiece tokenizer's bytes about 15% short) are not paired: evaluate.py's perplexity records
`byte_count` in its results, training validation in its text record (scoring_rules.py)."""

import json

import pytest
from test_compare_training_runs_paired import train_folder

from chipadapt.eval.paired_compare import paired_rows
from chipadapt.eval.same_items import NotSameItems, same_settings


def test_perplexity_runs_counting_bytes_by_another_rule_are_not_paired():
    new = {"first_token": "scored", "byte_count": "piece_utf8"}
    with pytest.raises(NotSameItems, match="byte_count None vs 'piece_utf8'"):
        same_settings("perplexity", "old", "new", {"first_token": "scored"}, new)
    assert same_settings("perplexity", "a", "b", new, dict(new)) == []


def mark(folder, **marks) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    for record in manifest["data"]["val_text"].values():
        record.update(marks)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_training_runs_counting_bytes_by_another_rule_are_not_paired(tmp_path):
    scored = {"first_token": "scored", "first_token_context": "<|endoftext|>"}
    old = train_folder(tmp_path / "old", [300.0, 350.0, 420.0, 500.0])
    new = train_folder(tmp_path / "new", [290.0, 345.0, 410.0, 480.0])
    other = train_folder(tmp_path / "other", [280.0, 340.0, 400.0, 470.0])
    mark(old, **scored)
    for folder in (new, other):
        mark(folder, **scored, byte_count="piece_utf8")
    [row] = paired_rows([("old", old), ("new", new)])
    assert row["verdict"] == "not paired"
    assert (
        "domain byte_count None vs 'piece_utf8' (None: a run from before, which counted a token's bytes"
        in (row["reason"])
    )
    assert any(r["metric"] == "val/domain/bpb" and r["n"] == 4 for r in paired_rows([("new", new), ("other", other)]))


def test_a_run_from_before_every_byte_was_scored_is_said_to_have_left_first_tokens_unscored(tmp_path):
    old = train_folder(tmp_path / "old", [300.0, 350.0, 420.0, 500.0])
    new = train_folder(tmp_path / "new", [290.0, 345.0, 410.0, 480.0])
    mark(new, first_token="scored", first_token_context="<|endoftext|>", byte_count="piece_utf8")
    [row] = paired_rows([("old", old), ("new", new)])
    # The message said the opposite: "a run from before validation scored the first token of each row".
    assert (
        "first_token None vs 'scored' (None: a run from before, which left the first token of each row unscored)"
        in (row["reason"])
    )


def test_a_run_resumed_from_a_checkpoint_scored_by_an_earlier_rule_drops_its_starting_validation(caplog):
    from omegaconf import OmegaConf

    from chipadapt.stages.common import StartingMetrics, validation_settings

    dapt = {"datamodule": {"_target_": "chipadapt.data.datamodule.PretrainDataModule"}}
    cfg = OmegaConf.create({"data": {"val_fraction": 0.1, "val_max_bytes": 8192}, "trainer": {}, "stage": dapt})
    now = validation_settings(cfg) | {"byte_count": "piece_utf8"}  # as with a SentencePiece-style tokenizer
    assert now["first_token"] == "scored"
    # A checkpoint of the version before: the same settings, no rules; its "before" left first tokens out.
    old = {key: value for key, value in now.items() if key not in ("first_token", "byte_count")}
    state = {"before": {"domain": {"bpb": 1.2}}, "settings": old, "items": {}, "changes": []}
    resumed = StartingMetrics(now)
    resumed.load_state_dict(state)
    assert resumed.values == {} and "read with other byte_count, first_token" in caplog.text
    assert resumed._changed_now == {"byte_count": [None, "piece_utf8"], "first_token": [None, "scored"]}
    same = StartingMetrics(now)
    same.load_state_dict({**state, "settings": dict(now)})
    assert same.values == {"domain": {"bpb": 1.2}}
    # SFT's conversations: their first token is no target in any version; only the byte count is a rule.
    assert "first_token" not in validation_settings(OmegaConf.create({"data": {}, "trainer": {}}))


def test_the_validation_text_record_says_how_bytes_were_counted():
    import numpy as np

    from chipadapt.data.val_text import ValidationText

    text = ValidationText(np.zeros((1, 2), dtype=np.int64), None, 40, 0, ["a/0"], first_token_context="</s>")
    assert "byte_count" not in text.record() and text.record()["first_token"] == "scored"  # byte-level BPE
    text.byte_count = "piece_utf8"  # a SentencePiece-style tokenizer's (models/token_bytes.py byte_count_rule)
    assert text.record()["byte_count"] == "piece_utf8" and text.record()["first_token"] == "scored"
