"""A new user's SteerLM chain on their own data, as the trial ran it: conversations labelled with quality,
helpfulness and humor only, prompt/completion pairs to annotate, and an attribute model trained on them with
the default five attribute names (two heads, UNLABELLED, never see a label)."""

import json

from conftest import TINY_FAST, compose, write_jsonl

UNLABELLED = ["toxicity", "creativity"]  # in data.attributes.names, never in the user's labels

_trained: dict[int, dict] = {}  # by the session's tmp_path_factory: one training however many files read it


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


def trained_attribute_model(tmp_path_factory) -> dict:
    """The user's data and an attribute model trained on it with the default five attribute names: trained
    once per test session, as each test file that reads it asks (several do; training takes seconds)."""
    if id(tmp_path_factory) in _trained:
        return _trained[id(tmp_path_factory)]
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
    steer = {"root": root, "chat": chat, "pc": pc, "attr": attr, "model": attr / "model"}
    _trained[id(tmp_path_factory)] = steer
    return steer


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
