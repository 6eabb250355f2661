"""What a new user's SFT/SteerLM trial found: OASST threads held out by their own id while their siblings
(the same tree, the same first turns) trained; per-turn attributes of a chat.py transcript ignored; empty
turns trained on; a same-command rerun of a completed attribute model refused as if its inputs changed;
the cut-answers warning without a file:line; the SFT blend table only on stdout."""

import json
import logging

import pytest
from conftest import compose, write_jsonl
from omegaconf import OmegaConf
from test_sft_inputs_trial import QA, sft_data

from chipadapt.data.conversations import load_conversations
from chipadapt.data.holdout import held_out
from chipadapt.errors import ChipadaptError


def _tree(tree: int, replies: int) -> list[dict]:
    """An OASST-style tree: `replies` threads sharing their first user turn, each its own message_id."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"question of tree {tree}?"},
                {"role": "assistant", "content": f"reply {r} of tree {tree}"},
            ],
            "message_id": f"m{tree}-{r}",
            "message_tree_id": f"t{tree}",
            "steerlm_attributes": {"quality": float(r % 5)},
        }
        for r in range(replies)
    ]


# --- 1. threads of a tree held out together ---------------------------------------------------------


def test_sft_holds_out_whole_trees_where_the_source_groups_by_message_tree_id(tmp_path):
    path = write_jsonl(tmp_path / "trees.jsonl", [row for t in range(40) for row in _tree(t, 3)])
    base = ["data.sources.kestrel_qa=null", "data.val_sources=null", f"+data.sources.mine.path={path}"]
    data = sft_data(tmp_path, [*base, "data.val_fraction=0.2", "+data.sources.mine.group_by=message_tree_id"])
    data.setup()
    convs = load_conversations("mine", {"path": str(path), "group_by": "message_tree_id"}).conversations
    held_trees = {c.group for c in convs if held_out(c.group, 0.2)}
    assert held_trees and all(c.holdout_key == c.group for c in convs)
    (row,) = data.stats["sources"]
    assert row["val"] == 3 * len(held_trees) and row["train"] == 120 - row["val"]  # whole trees, every sibling
    # Before: held out by message_id, most held-out threads had a sibling (the same question) in training.
    by_id = [c for c in convs if held_out(c.id, 0.2)]
    assert {c.group for c in by_id} & {c.group for c in convs if not held_out(c.id, 0.2)}


def test_the_shipped_oasst_sources_group_by_tree_and_a_record_without_the_key_is_refused(tmp_path):
    for overrides, name in (
        (["stage=sft"], "oasst"),
        (["stage=steerlm"], "oasst"),
        (["stage=attribute_model"], "oasst_labelled"),
    ):
        cfg = compose([*overrides, "model=tiny"], tmp_path / "run")
        assert cfg.data.sources[name].group_by == "message_tree_id", overrides
    rows = _tree(0, 2) + [{"messages": QA, "message_id": "x"}]
    path = write_jsonl(tmp_path / "missing.jsonl", rows)
    with pytest.raises(ChipadaptError, match=rf"^{path}:3: no 'message_tree_id', which data.sources.m.group_by"):
        load_conversations("m", {"path": str(path), "group_by": "message_tree_id"})
    with pytest.raises(ChipadaptError, match=r"data.sources.m.group_by: expected the name of a record key"):
        load_conversations("m", {"path": str(path), "group_by": 3})


def test_the_attribute_model_holds_out_whole_trees(tmp_path):
    from chipadapt.models.hf_folder import load_tokenizer, resolve_model_folder
    from chipadapt.steerlm.attribute_data import AttributeDataModule

    cfg = compose(["stage=attribute_model", "model=tiny"], tmp_path / "run")
    path = write_jsonl(tmp_path / "trees.jsonl", [row for t in range(30) for row in _tree(t, 3)])
    cfg.data.sources = {"a": {"path": str(path), "format": "chat", "group_by": "message_tree_id"}}
    cfg.data.val_fraction = 0.2
    data = AttributeDataModule(cfg.data, load_tokenizer(resolve_model_folder(cfg.model)), seed=0)
    data.setup("fit")
    trees = {t for t in range(30) if held_out(f"t{t}", 0.2)}
    assert data.stats["val_conversations"] == 3 * len(trees) > 0
    # Before (by message_id): the held-out replies' questions were trained on in their siblings.
    tokenizer = data.tokenizer
    asked = lambda items: {t for ids, *_ in items for t in range(30) if f"tree {t}?" in tokenizer.decode(ids)}  # noqa: E731
    assert asked(data.val_sets["attributes"]) == trees and not trees & asked(data.train_items)


# --- 2. an assistant turn's own attributes ---------------------------------------------------------


def _transcript(tmp_path, quality) -> str:
    messages = [
        QA[0],
        {**QA[1], "attributes": {"quality": 4}},
        {"role": "user", "content": "And a flip-flop?"},
        {"role": "assistant", "content": "Edge-triggered.", "attributes": {"quality": quality}},
    ]
    return str(write_jsonl(tmp_path / "chat.jsonl", [{"messages": QA}, {"messages": messages}]))


def test_per_turn_attributes_are_validated_and_refused_where_attributes_are_trained(tmp_path):
    off_scale = _transcript(tmp_path, 9.0)
    with pytest.raises(ChipadaptError, match=rf"^{off_scale}:2: turn 4: attribute 'quality' is 9.0, not a number"):
        load_conversations("m", {"path": off_scale})
    path = _transcript(tmp_path, 1)
    assert load_conversations("m", {"path": path}).conversations[1].reply_attributes == {
        2: {"quality": 4},
        4: {"quality": 1},
    }
    base = ["data.sources.kestrel_qa=null", "data.val_sources=null", f"+data.sources.mine.path={path}"]
    with pytest.raises(ChipadaptError, match=rf"^{path}:2: turn 2 \(assistant\) carries its own 'attributes'"):
        sft_data(tmp_path, [*base, "data.attributes.use=true"]).setup()
    sft_data(tmp_path, base).setup()  # plain SFT reads no attributes, a record's or a turn's


# --- 3. empty turns ----------------------------------------------------------------------------------


@pytest.mark.parametrize("turn", [{"role": "assistant", "content": ""}, {"role": "user", "content": "  \n"}])
def test_an_empty_user_or_assistant_turn_is_refused_naming_its_line(tmp_path, turn):
    rows = [{"messages": QA}] * 6 + [{"messages": [QA[0], turn] if turn["role"] == "assistant" else [turn, QA[1]]}]
    path = write_jsonl(tmp_path / "empty.jsonl", rows)
    number = 2 if turn["role"] == "assistant" else 1
    with pytest.raises(ChipadaptError, match=rf"^{path}:7: 'messages' turn {number} \({turn['role']}\) is empty"):
        load_conversations("m", {"path": str(path)})
    system = [{"role": "system", "content": ""}, *QA]  # an empty system message is no turn of the dialogue
    assert (
        len(
            load_conversations(
                "m", {"path": str(write_jsonl(tmp_path / "s.jsonl", [{"messages": system}]))}
            ).conversations
        )
        == 1
    )
    pc = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "q", "completion": ""}])
    with pytest.raises(ChipadaptError, match=rf"^{pc}:1: 'completion' is empty"):
        load_conversations("m", {"path": str(pc), "format": "prompt_completion"})


# --- 4. a same-command rerun of a completed attribute model ------------------------------------------


def _completed(out, cfg):
    from chipadapt.io.outputs import write_marker

    (out / "model").mkdir(parents=True)
    write_marker(out / "model", "train")
    (out / "manifest.json").write_text(
        json.dumps(
            {
                "kind": "train",
                "status": "completed",
                "config": OmegaConf.to_container(cfg, resolve=True),
                "inputs": {},
                "metrics": {"val": {"quality": {"mae": 1.0}}},
            }
        )
    )


def test_a_completed_attribute_model_rerun_with_the_same_command_passes_as_done(tmp_path):
    from chipadapt.manifest import fingerprint_input
    from chipadapt.pipeline import finished_before

    out = tmp_path / "run"
    cfg = compose(["stage=attribute_model", "model=tiny"], out)
    path = write_jsonl(tmp_path / "trees.jsonl", _tree(0, 3))
    cfg.data.sources = {"a": {"path": str(path), "format": "chat"}}
    _completed(out, cfg)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["inputs"] = {"data.sources.a": {"path": str(path), **fingerprint_input(path)}}
    if cfg.model.get("path"):
        manifest["inputs"]["model"] = {"path": cfg.model.path, **fingerprint_input(cfg.model.path)}
    (out / "manifest.json").write_text(json.dumps(manifest))
    # Before: None (not a recorded stage), and the refusal blamed "other inputs".
    assert finished_before(cfg, out) == {"val": {"quality": {"mae": 1.0}}}


def test_a_rerun_of_a_stage_never_passed_as_done_does_not_blame_its_inputs(tmp_path):
    from chipadapt.finished_run import what_changed

    out = tmp_path / "run"
    cfg = compose(["stage=reranker", "model=tiny", "reranker.train_file=x.jsonl"], out)
    _completed(out, cfg)
    said = what_changed(cfg, out)
    assert "other inputs" not in said and "stage=reranker run is not passed as done" in said


# --- 5. the cut-answers warning names its file:line; the blend table reaches the log file ------------


def test_the_cut_warning_names_the_first_conversation_and_the_blend_table_is_logged_to_the_file(tmp_path, caplog):
    from chipadapt.table_log import print_and_log

    long_answer = {"role": "assistant", "content": "A latch is level-sensitive. " * 20}
    path = write_jsonl(tmp_path / "long.jsonl", [{"messages": QA}] * 3 + [{"messages": [QA[0], long_answer]}] * 2)
    base = ["data.sources.kestrel_qa=null", "data.val_sources=null", f"+data.sources.mine.path={path}"]
    data = sft_data(tmp_path, [*base, "data.seq_len=300"])
    with caplog.at_level(logging.WARNING):
        data.setup()
    assert f"2 of data.sources.mine (first: {path}:4)" in caplog.text
    logger = logging.getLogger("chipadapt.test_table_log")
    handler = logging.FileHandler(tmp_path / "train.log")
    logger.addHandler(handler)
    try:
        print_and_log(data.summary(), logger)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert "SFT blend: 5 conversations" in (tmp_path / "train.log").read_text()
