"""A new user's SteerLM chain on their own data (quality, helpfulness and humor labelled; the attribute
model's default five heads): what the trial found, in-process on the tiny model.
- Heads without a training label were written by annotate and bootstrap as ratings (0.0, clipped
  untrained outputs); now the model folder records which heads had labels, and they are null.
- annotate.input.path=<own file> lost a fifth of it to the EDA evaluation split meant for the EDA corpus.
- annotate.limit=0 was a ZeroDivisionError, -1 dropped the last row; misspelt or off-scale bootstrap
  settings ran; a rerun with other settings replaced annotated.jsonl / bootstrap.jsonl without asking.
- The attribute model's MAE/Spearman and bootstrap's mean ratings had no intervals nor paired tests.
- export.py's refusal of another command's folder said "no chipadapt marker" where the folder had one."""

import json
import logging

import numpy as np
import pytest
from conftest import TINY_FAST, compose, write_jsonl

from chipadapt.errors import ChipadaptError

UNLABELLED = ["toxicity", "creativity"]  # in data.attributes.names, never in the user's labels


def chat_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        good = i % 2 == 0
        rows.append(
            {
                "id": f"c{i}",
                "messages": [
                    {"role": "user", "content": f"Question {i} about setup and hold timing?"},
                    {"role": "assistant", "content": "Add delay cells on the short path." if good else "no idea lol"},
                ],
                "attributes": {"quality": 4 if good else 1, "helpfulness": 3 + i % 2, "humor": i % 3},
            }
        )
    return rows


def prompt_completion_rows(n: int) -> list[dict]:
    return [{"prompt": f"What does command {i} do?", "completion": f"It runs step {i} of the flow."} for i in range(n)]


@pytest.fixture(scope="module")
def steer(tmp_path_factory):
    """The user's data and an attribute model trained on it with the default five attribute names."""
    from chipadapt.pipeline import train

    root = tmp_path_factory.mktemp("steer")
    chat = write_jsonl(root / "chat.jsonl", chat_rows(24))
    pc = write_jsonl(root / "pc.jsonl", prompt_completion_rows(30))
    attr = root / "attr"
    train(
        compose(
            [
                "stage=attribute_model",
                *TINY_FAST,
                "data.sources.oasst_labelled=null",
                f"+data.sources.mine.path={chat}",
                "+data.sources.mine.format=chat",
                "data.val_fraction=0.3",
                "data.micro_batch_size=4",
                "trainer.max_steps=2",
            ],
            attr,
        )
    )
    return {"root": root, "chat": chat, "pc": pc, "attr": attr, "model": attr / "model"}


def annotate_overrides(steer, *extra) -> list[str]:
    return [
        "stage=annotate",
        *TINY_FAST,
        f"annotate.attribute_model={steer['model']}",
        f"annotate.input.path={steer['pc']}",
        "annotate.input.completion_key=completion",
        *extra,
    ]


def bootstrap_overrides(steer, *extra) -> list[str]:
    return [
        "stage=bootstrap",
        *TINY_FAST,
        f"bootstrap.attribute_model={steer['model']}",
        f"bootstrap.prompts.path={steer['chat']}",
        "bootstrap.limit=3",
        "bootstrap.samples_per_setting=1",
        "bootstrap.max_new_tokens=4",
        *extra,
    ]


def rows_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


# 1. Heads without a training label: recorded, and null wherever the attribute model rates.


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


# 2. The EDA evaluation split: the EDA corpus's, not the user's file's.


def test_the_eda_split_applies_to_the_eda_corpus_and_is_counted(steer, tmp_path):
    from chipadapt.stages.annotate import input_spec, read_input

    default = compose(["stage=annotate", *TINY_FAST, "annotate.attribute_model=a"], tmp_path)
    spec, switch_off = input_spec(default.annotate)
    assert spec["exclude_eval_split"] == {"fraction": 0.2} and switch_off == "annotate.eda_eval_split=null keeps them"

    own = compose(annotate_overrides(steer), tmp_path)
    spec, switch_off = input_spec(own.annotate)
    assert "exclude_eval_split" not in spec and switch_off is None

    # Asked for by name on any file: applied, and what it leaves out is counted.
    asked = compose(annotate_overrides(steer, "+annotate.input.exclude_eval_split={fraction: 0.5}"), tmp_path)
    spec, switch_off = input_spec(asked.annotate)
    convs, left_out = read_input(spec, switch_off)
    assert 0 < left_out < 30 and len(convs) + left_out == 30


# 3-4. Counts and attribute settings: one line naming the key, before anything runs.


@pytest.mark.parametrize(
    "override, message",
    [
        ("annotate.limit=0", r"annotate.limit: 0 is not a whole number >= 1 \(null takes them all\)"),
        ("annotate.limit=-1", r"annotate.limit: -1 is not a whole number >= 1"),
        ("annotate.batch_size=0", r"annotate.batch_size: 0 is not a whole number >= 1"),
    ],
)
def test_annotate_counts_that_select_nothing_are_refused(tmp_path, override, message):
    from chipadapt.config_schema import validate

    with pytest.raises(ChipadaptError, match=message):
        validate(compose(["stage=annotate", *TINY_FAST, "annotate.attribute_model=a", override], tmp_path))
    cfg = compose(["stage=annotate", *TINY_FAST, "annotate.attribute_model=a", "annotate.limit=3e1"], tmp_path)
    validate(cfg)
    assert cfg.annotate.limit == 30


@pytest.mark.parametrize(
    "settings, message",
    [
        ("[{quality: 9, helpfulnes: 4}]", r"\[0\]\.helpfulnes: not an attribute .*did you mean helpfulness\?"),
        ("[{quality: 9, helpfulness: 4}]", r"\[0\]\.quality: 9 is off SteerLM's 0-4 scale"),
        ("[{quality: 4}, {humor: -1}]", r"\[1\]\.humor: -1 is off SteerLM's 0-4 scale"),
        ("[{}]", r"\[0\]: expected a mapping"),
    ],
)
def test_bootstrap_settings_off_the_scale_or_misspelt_are_refused(tmp_path, settings, message):
    from chipadapt.config_schema import validate

    cfg = compose(
        ["stage=bootstrap", *TINY_FAST, "bootstrap.attribute_model=a", f"bootstrap.attribute_settings={settings}"],
        tmp_path,
    )
    with pytest.raises(ChipadaptError, match=r"bootstrap\.attribute_settings" + message):
        validate(cfg)


def test_bootstrap_score_weights_must_weigh_a_rated_attribute(steer, tmp_path, caplog):
    from chipadapt.pipeline import train

    for weights in ("{helpfulnes: 1.0}", "{toxicity: -1.0}"):  # misspelt; a head without training labels
        with pytest.raises(ChipadaptError, match=r"bootstrap.score_weights: no weight on an attribute .* rates"):
            train(
                compose(
                    bootstrap_overrides(steer, "~bootstrap.score_weights", f"+bootstrap.score_weights={weights}"),
                    tmp_path / "w",
                )
            )
    assert "bootstrap.score_weights: helpfulnes left out of the score" in caplog.text


# 5. Reruns: the training stages' rule.


def test_a_rerun_with_other_settings_keeps_the_output_unless_overwrite(steer, tmp_path, caplog):
    from chipadapt.pipeline import train

    caplog.set_level("INFO", logger="chipadapt.pipeline")
    run = tmp_path / "ann"
    train(compose(annotate_overrides(steer, "annotate.limit=6"), run))
    written = (run / "annotated.jsonl").read_bytes()
    manifest = (run / "manifest.json").read_bytes()

    again = train(
        compose(annotate_overrides(steer, "annotate.limit=6"), run)
    )  # the same settings: passed, nothing redone
    assert again["annotated"] == 6 and (run / "manifest.json").read_bytes() == manifest
    assert "completed before with these settings and inputs; not annotated again" in caplog.text

    with pytest.raises(
        ChipadaptError,
        match=r"annotated.jsonl exists, written by a completed annotate run with other settings "
        r"\(annotate.limit: 6 -> 4\); overwrite=true replaces it",
    ):
        train(compose(annotate_overrides(steer, "annotate.limit=4"), run))
    assert (run / "annotated.jsonl").read_bytes() == written and (run / "manifest.json").read_bytes() == manifest

    train(compose(annotate_overrides(steer, "annotate.limit=4", "overwrite=true"), run))
    assert len(rows_of(run / "annotated.jsonl")) == 4
    manifest = (run / "manifest.json").read_bytes()
    # Those settings again without overwrite=true: passed (overwrite says what may go, not what is made).
    assert train(compose(annotate_overrides(steer, "annotate.limit=4"), run))["annotated"] == 4
    assert (run / "manifest.json").read_bytes() == manifest


def test_a_rerun_after_the_input_changed_is_refused_and_a_file_of_a_failed_run_kept(steer, tmp_path):
    from chipadapt.pipeline import train
    from chipadapt.stages.bootstrap import finished_before

    own = write_jsonl(tmp_path / "pc.jsonl", prompt_completion_rows(5))
    run = tmp_path / "ann"
    overrides = [*annotate_overrides(steer), f"annotate.input.path={own}"]  # the later override wins
    train(compose(overrides, run))
    write_jsonl(own, prompt_completion_rows(6))
    with pytest.raises(ChipadaptError, match=r"whose inputs changed since \(annotate.input\)"):
        train(compose(overrides, run))

    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "bootstrap.jsonl").write_text('{"id": "boot0"}\n')  # a round that failed after writing
    (boot / "manifest.json").write_text(json.dumps({"kind": "train", "status": "failed"}))
    with pytest.raises(ChipadaptError, match=r"bootstrap.jsonl exists, not as a completed run in this folder wrote it"):
        finished_before(compose(bootstrap_overrides(steer), boot), boot)
    assert finished_before(compose(bootstrap_overrides(steer, "overwrite=true"), boot), boot) is None
    # The same settings as the run that failed: it runs again, as a training run resumes.
    from omegaconf import OmegaConf

    cfg = compose(bootstrap_overrides(steer), boot)
    record = {"kind": "train", "status": "failed", "config": OmegaConf.to_container(cfg, resolve=True)}
    (boot / "manifest.json").write_text(json.dumps(record))
    assert finished_before(cfg, boot) is None


# 6. Figures with their uncertainty.


def test_attribute_figures_carry_intervals_a_paired_baseline_test_and_an_undefined_spearman():
    from chipadapt.modules.attribute_figures import attribute_figures

    labels = [0, 1, 2, 3, 4, 4, 3, 2]
    good = attribute_figures([0.2, 1.1, 2.0, 2.9, 3.8, 4.0, 3.1, 2.2], labels, baseline=2.375)
    assert good["mae_ci"][0] <= good["mae"] <= good["mae_ci"][1] and good["mae_n"] == 8
    assert good["baseline_mae_ci"][0] <= good["baseline_mae"] <= good["baseline_mae_ci"][1]
    paired = good["mae_minus_baseline"]
    assert paired["difference"] == pytest.approx(good["mae"] - good["baseline_mae"])
    assert paired["test"] == "paired-permutation-exact" and paired["verdict"] == "lower" and paired["p"] < 0.05
    assert good["spearman"] > 0.9 and -1 <= good["spearman_ci"][0] < good["spearman"] < good["spearman_ci"][1] <= 1
    assert "spearman_undefined" not in good

    flat = attribute_figures([0.5] * 8, labels, baseline=2.375)  # a model that predicts one value
    assert flat["spearman"] is None and flat["spearman_ci"] is None  # was +0.000
    assert flat["spearman_undefined"] == "every prediction is 0.500: the model ranks nothing"
    tied = attribute_figures([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [3] * 8, baseline=3.0)
    assert tied["spearman"] is None and tied["spearman_undefined"].startswith("every label is 3")


def test_the_attribute_models_manifest_and_table_carry_the_intervals(steer):
    val = json.loads((steer["attr"] / "manifest.json").read_text())["metrics"]["val"]
    assert set(val) <= {"quality", "helpfulness", "humor"} and val  # untrained heads have no held-out labels
    for figures in val.values():
        assert len(figures["mae_ci"]) == 2 and len(figures["baseline_mae_ci"]) == 2
        assert figures["mae_minus_baseline"]["n"] == figures["n"]
        assert figures["spearman"] is None or len(figures["spearman_ci"]) == 2


def test_setting_figures_pair_the_settings_on_the_same_prompts():
    from chipadapt.steerlm.setting_figures import by_setting

    prompts, per_setting = 8, 2
    ratings, setting_of, prompt_of = [], [], []
    for p in range(prompts):
        for s in range(2):
            for k in range(per_setting):
                ratings.append({"quality": p * 1.0 + s * 1.0 + k * 0.1, "toxicity": None})
                setting_of.append(s)
                prompt_of.append(p)
    first, second = by_setting(
        [{"quality": 1}, {"quality": 4}], ratings, setting_of, prompt_of, prompts, ["quality", "toxicity"], ["quality"]
    )
    assert first["replies"] == second["replies"] == 16
    assert first["mean_rating"]["quality"] == pytest.approx(
        np.mean([r["quality"] for r, s in zip(ratings, setting_of) if s == 0])
    )
    low, high = first["mean_rating_ci"]["quality"]
    assert low < first["mean_rating"]["quality"] < high
    assert first["mean_rating"]["toxicity"] is None and "minus_first" not in first
    paired = second["minus_first"]["quality"]
    # Every prompt one point higher: the paired test sees it on 8 prompts, where the intervals overlap.
    assert paired["difference"] == pytest.approx(1.0) and paired["verdict"] == "higher" and paired["n"] == 8
    assert paired["p"] == pytest.approx(2 / 2**8)
    assert second["mean_rating_ci"]["quality"][0] < first["mean_rating_ci"]["quality"][1]


# 7. export.py into another command's folder.


def test_a_refused_output_folder_names_the_command_whose_marker_it_carries(tmp_path):
    from chipadapt.io.outputs import check_output_folder, write_marker

    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    write_marker(model, "train")
    with pytest.raises(
        ChipadaptError, match=r"is not an output of export \(train wrote it, as its .chipadapt-output.json says\)"
    ):
        check_output_folder(model, "export", "output", overwrite=True)
    (model / ".chipadapt-output.json").unlink()
    with pytest.raises(ChipadaptError, match=r"is not an output of export \(no chipadapt marker\)"):
        check_output_folder(model, "export", "output", overwrite=True)
