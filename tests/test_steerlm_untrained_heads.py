"""A new user's SteerLM chain on their own data (quality, helpfulness and humor labelled; the attribute
model's default five heads), in-process on the tiny model: heads without a training label were written by
annotate and bootstrap as ratings (0.0, clipped untrained outputs); now the model folder records which heads
had labels, and they are null. Bootstrap writes its attribute strings in the order the model records."""

import json
import logging

import pytest
from conftest import TINY_FAST, compose
from helpers.steerlm_own_data import (
    UNLABELLED,
    annotate_overrides,
    bootstrap_overrides,
    rows_of,
    trained_attribute_model,
)


@pytest.fixture(scope="module")
def steer(tmp_path_factory):
    """The user's data and the attribute model trained on it (helpers.steerlm_own_data)."""
    return trained_attribute_model(tmp_path_factory)


def test_the_attribute_model_records_which_heads_had_training_labels(steer):
    config = json.loads((steer["model"] / "config.json").read_text())
    labels = config["attribute_train_labels"]
    assert [config["id2label"][str(i)] for i in range(5)] == [
        "quality",
        "helpfulness",
        "toxicity",
        "humor",
        "creativity",
    ]
    assert all(labels[name] == 0 for name in UNLABELLED)
    assert all(labels[name] > 0 for name in ("quality", "helpfulness", "humor"))
    manifest = json.loads((steer["attr"] / "manifest.json").read_text())
    assert manifest["data"]["train_labels"] == labels


def test_the_datamodule_warns_of_heads_no_training_label_reaches(steer, caplog):
    from hydra.utils import instantiate

    from chipadapt.models.hf_folder import load_tokenizer

    cfg = compose(
        [
            "stage=attribute_model",
            *TINY_FAST,
            "data.sources.oasst_labelled=null",
            f"+data.sources.mine.path={steer['chat']}",
        ],
        steer["root"] / "unused",
    )
    with caplog.at_level(logging.WARNING):
        data = instantiate(cfg.stage.datamodule)(tokenizer=load_tokenizer(steer["model"]))
        data.setup("fit")
    assert data.train_labels["toxicity"] == 0 and data.train_labels["quality"] > 0
    assert "no training conversation is labelled with toxicity, creativity" in caplog.text


def test_annotate_writes_null_for_untrained_heads_and_a_users_file_whole(steer, tmp_path):
    from chipadapt.pipeline import train

    run = tmp_path / "ann"
    metrics = train(compose(annotate_overrides(steer), run))
    rows = rows_of(run / "annotated.jsonl")
    assert len(rows) == 30  # was 26: the EDA evaluation split thinned the user's own file
    assert metrics["left_out_eval_split"] == 0 and metrics["unrated"] == UNLABELLED
    for row in rows:
        assert all(row["attributes"][name] is None for name in UNLABELLED)  # was 0.0 on every row
        assert 0 <= row["attributes"]["quality"] <= 4
    assert metrics["mean_attributes"]["toxicity"] is None

    # SteerLM reads them as unlabelled: no `toxicity:0` in its attribute strings.
    from chipadapt.data.conversations import read_conversations

    read = read_conversations("annotated", {"path": str(run / "annotated.jsonl"), "format": "chat"})
    assert all(not set(UNLABELLED) & set(c.attributes) for c in read)


def test_bootstrap_rates_untrained_heads_null_with_intervals_and_paired_settings(steer, tmp_path):
    from chipadapt.pipeline import train

    run = tmp_path / "boot"
    metrics = train(compose(bootstrap_overrides(steer), run))
    assert metrics["unrated"] == UNLABELLED
    for row in rows_of(run / "bootstrap.jsonl"):
        assert all(row["attributes"][name] is None for name in UNLABELLED)
    first, second = metrics["by_setting"]
    assert first["mean_rating"]["toxicity"] is None and first["mean_rating_ci"]["toxicity"] is None
    low, high = first["mean_rating_ci"]["quality"]
    assert low <= first["mean_rating"]["quality"] <= high
    paired = second["minus_first"]["quality"]
    assert paired["n"] == 3 and paired["test"] == "paired-permutation-exact"
    assert "toxicity" not in second["minus_first"]


def test_a_folder_without_the_record_rates_every_head_and_says_so(steer, tmp_path, caplog):
    import shutil

    from hydra.utils import instantiate

    from chipadapt.steerlm.rating import AttributeRater

    old = tmp_path / "old"
    shutil.copytree(steer["model"], old)
    config = json.loads((old / "config.json").read_text())
    del config["attribute_train_labels"]
    (old / "config.json").write_text(json.dumps(config))
    template = compose(["stage=annotate", *TINY_FAST], tmp_path / "unused").data.template
    with caplog.at_level(logging.WARNING):
        rater = AttributeRater(str(old), instantiate(template), 64, 4)
    assert rater.unrated == [] and "records no attribute_train_labels" in caplog.text
    rating = rater.rate([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]])[0]
    assert all(isinstance(rating[name], float) for name in rater.attributes)


def test_bootstrap_writes_the_attribute_strings_in_the_order_the_model_records(tmp_path, caplog):
    from chipadapt.stages.bootstrap import steering_order

    cfg = compose(["stage=bootstrap", *TINY_FAST, "bootstrap.attribute_model=a"], tmp_path / "unused")
    folder = tmp_path / "steer_model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"steerlm_attribute_order": ["humor", "quality"]}))
    with caplog.at_level(logging.WARNING):
        assert steering_order(cfg, folder) == ["humor", "quality"]
    assert "is not the order" in caplog.text
    (folder / "config.json").write_text("{}")
    assert steering_order(cfg, folder) == list(cfg.data.attributes.order)
