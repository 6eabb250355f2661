"""SteerLM: attribute model, annotation, attribute-conditioned SFT that the user steers, bootstrapping."""

import json

import pytest
from conftest import CONF, SHARED_DATA, write_jsonl

FUNNY, PLAIN = "It is a banana with pins!", "It is a RISC-V core."


def train_here(overrides, out):
    """train.py's job on its composed config, in this process (validated as the command validates it): these
    tests are about what the stages make, not the command line's contract; each fresh train.py spent seconds
    importing. Returns a copy of the job's config, to read after Hydra's job config is put back."""
    from helpers.entry_jobs import entry_job
    from omegaconf import OmegaConf

    from chipadapt.config_schema import validate
    from chipadapt.pipeline import train

    with entry_job("train", overrides, out) as cfg:
        validate(cfg)
        train(cfg)
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))


def steer_data(tmp_path):
    rows = []
    for i in range(8):
        rows.append(
            {
                "id": f"f{i}",
                "messages": [
                    {"role": "user", "content": "Describe the chip."},
                    {"role": "assistant", "content": FUNNY},
                ],
                "attributes": {"humor": 4, "quality": 4},
            }
        )
        rows.append(
            {
                "id": f"p{i}",
                "messages": [
                    {"role": "user", "content": "Describe the chip."},
                    {"role": "assistant", "content": PLAIN},
                ],
                "attributes": {"humor": 0, "quality": 4},
            }
        )
    return write_jsonl(tmp_path / "steer.jsonl", rows)


@pytest.mark.integration
def test_attribute_conditioned_sft_follows_the_attributes_the_user_chooses(tmp_path, tiny_overrides):
    out = tmp_path / "steer"
    cfg = train_here(
        [
            "stage=steerlm",
            *tiny_overrides,
            "data=sft_sample",
            f"data.sources.kestrel_qa.path={steer_data(tmp_path)}",
            "+data.sources.kestrel_qa.epochs=60",
            "data.val_sources=null",
            "data.attributes.use=true",
            "data/template=chipnemo",
            "data.template.default_system=''",
            "data.seq_len=128",
            "data.micro_batch_size=4",
            "data.global_batch_size=4",
            "optim=adam_const",
            "optim.lr=3e-3",
            "stage.validate_before=false",
        ],
        out,
    )
    from hydra.utils import instantiate

    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer
    from chipadapt.steerlm.generate import generate_with_attributes

    model, tok = load_causal_lm(out / "model", "float32", "sdpa").eval(), load_tokenizer(out / "model")
    template = instantiate(cfg.data.template)(tokenizer=tok)
    ask = [{"role": "user", "content": "Describe the chip."}]
    # Saved with the format it was trained in: apply_chat_template prompts it the same way.
    assert tok.apply_chat_template(ask, tokenize=False, add_generation_prompt=True) == template.prompt(ask)
    funny = generate_with_attributes(model, tok, template, ask, {"humor": 4, "quality": 4}, ["quality", "humor"], 12)
    plain = generate_with_attributes(model, tok, template, ask, {"humor": 0, "quality": 4}, ["quality", "humor"], 12)
    assert funny != plain
    assert funny.startswith("It is a banana") and plain.startswith("It is a RISC")

    # Bootstrap samples in left-padded batches, also with a tokenizer that has no pad token (Llama-2):
    # greedy replies equal the one-at-a-time ones, and the tokenizer is left as it was.
    from chipadapt.steerlm.generate import sample_with_attributes

    tok.pad_token, side = None, tok.padding_side
    longer = [{"role": "user", "content": "Describe the chip in more words, please, and its pipeline."}]
    settings = [{"humor": 4, "quality": 4}, {"humor": 0, "quality": 4}]
    batched, _ = sample_with_attributes(
        model, tok, template, [ask, longer], settings, ["quality", "humor"], 1, 12, 0.0, 4
    )
    single = [
        [generate_with_attributes(model, tok, template, m, s, ["quality", "humor"], 12) for s in settings]
        for m in (ask, longer)
    ]
    assert batched == single and tok.pad_token is None and tok.padding_side == side

    # The folder records the order its attribute strings were written in; chat.py prompts in that order
    # (it once used an attribute_order of its own: another order than the model learned).
    from hydra import compose, initialize_config_dir

    from chipadapt.chat import ChatSession
    from chipadapt.steerlm.attribute_record import recorded_attribute_order

    trained_order = list(cfg.data.attributes.order)
    assert recorded_attribute_order(out / "model") == trained_order
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        chat_cfg = compose("chat", overrides=[f"model.path={out / 'model'}"])
    assert ChatSession(chat_cfg).order == trained_order


@pytest.mark.integration
def test_attribute_model_annotate_and_a_bootstrap_round(tmp_path, tiny_overrides):
    labelled = []
    for i in range(40):
        good = i % 2 == 0
        labelled.append(
            {
                "id": f"c{i}",
                "messages": [
                    {"role": "user", "content": f"Question {i} about timing?"},
                    {"role": "assistant", "content": "Add delay cells to fix hold." if good else "no idea lol"},
                ],
                "steerlm_attributes": {"quality": 4 if good else 0, "humor": 0 if good else 3},
            }
        )
    data = write_jsonl(tmp_path / "labelled.jsonl", labelled)
    attr = tmp_path / "attr"
    train_here(
        [
            "stage=attribute_model",
            *tiny_overrides,
            f"data.sources.oasst_labelled.path={data}",
            "data.sources.oasst_labelled.group_by=null",  # no OASST trees: each conversation held out alone
            "data.attributes.names=[quality,humor]",
            "data.val_fraction=0.3",
            "data.seq_len=64",
            "data.micro_batch_size=8",
            "data.global_batch_size=8",
            "trainer.max_epochs=8",
            "optim.lr=3e-3",
            "optim.scheduler.num_warmup_steps=2",
        ],
        attr,
    )
    val = json.loads((attr / "manifest.json").read_text())["metrics"]["val"]
    assert set(val) == {"quality", "humor"}
    assert val["quality"]["mae"] < val["quality"]["baseline_mae"]  # learns the easy split better than the mean
    assert json.loads((attr / "model" / "config.json").read_text())["id2label"] == {"0": "quality", "1": "humor"}

    ann = tmp_path / "ann"
    chat = write_jsonl(tmp_path / "chat.jsonl", labelled[:6])
    train_here(
        [
            "stage=annotate",  # rates with annotate.attribute_model: no `model` (refused as unread)
            f"annotate.attribute_model={attr / 'model'}",
            f"annotate.input.path={chat}",
            "annotate.input.format=chat",
            "~annotate.input.prompt_key",
            "~annotate.input.completion_key",
        ],
        ann,
    )
    rows = [json.loads(row) for row in (ann / "annotated.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(0 <= r["attributes"]["quality"] <= 4 for r in rows)
    assert rows[0]["attributes"]["quality"] > rows[1]["attributes"]["quality"]

    boot = tmp_path / "boot"
    train_here(
        [
            "stage=bootstrap",
            "model=tiny",  # annotate and bootstrap train nothing: no data or callbacks
            f"bootstrap.attribute_model={attr / 'model'}",
            f"bootstrap.prompts.path={chat}",
            "bootstrap.limit=2",
            "bootstrap.samples_per_setting=1",
            "bootstrap.max_new_tokens=6",
        ],
        boot,
    )
    metrics = json.loads((boot / "manifest.json").read_text())["metrics"]
    assert metrics["prompts"] == 2 and metrics["candidates"] == 4 and metrics["kept"] <= 2
    # Two settings, one reply per prompt each: the rating of each setting's replies is reported apart.
    assert [s["replies"] for s in metrics["by_setting"]] == [2, 2]
    assert (
        metrics["by_setting"][1]["setting"]["humor"] == 1
        and 0 <= metrics["by_setting"][0]["mean_rating"]["quality"] <= 4
    )
    kept = [json.loads(row) for row in (boot / "bootstrap.jsonl").read_text().splitlines() if row]
    assert all(r["messages"][-1]["role"] == "assistant" and "quality" in r["attributes"] for r in kept)


def test_helpsteer_and_oasst_attribute_formats_are_both_read(tmp_path):
    from chipadapt.data.conversations import read_conversations

    helpsteer = write_jsonl(
        tmp_path / "hs.jsonl",
        [
            {
                "prompt": "p",
                "response": "r",
                "helpfulness": 3,
                "correctness": 4,
                "coherence": 4,
                "complexity": 1,
                "verbosity": 2,
            }
        ],
    )
    conv = read_conversations(
        "hs",
        {"path": str(helpsteer), "format": "prompt_completion", "prompt_key": "prompt", "completion_key": "response"},
    )[0]
    assert conv.attributes == {"helpfulness": 3, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 2}
    if (SHARED_DATA / "chat" / "oasst1_val_en_threads.jsonl").is_file():
        oasst = read_conversations(
            "o", {"path": str(SHARED_DATA / "chat" / "oasst1_val_en_threads.jsonl"), "format": "chat"}
        )
        assert len(oasst) == 1213 and set(oasst[0].attributes) == {
            "quality",
            "toxicity",
            "humor",
            "creativity",
            "helpfulness",
        }
