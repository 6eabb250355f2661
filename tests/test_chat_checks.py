"""chat.py's settings are checked before the model loads: each value generate() would have taken
silently (before: exit 0, ignored or misread) is one line naming the key."""

import json

import pytest
from conftest import CONF

from chipadapt.chat_checks import check_chat_config
from chipadapt.errors import ChipadaptError


def chat_config(overrides: list[str], tmp_path):
    from hydra import compose, initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("chat", overrides=["model=tiny", *overrides, f"paths.output_dir={tmp_path}"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("generate.max_new_tokens=0", r"^generate.max_new_tokens: 0 is not a whole number of at least 1$"),
        ("generate.temperature=-1", r"^generate.temperature: -1 is not a number >= 0"),
        ("generate.top_p=5", r"^generate.top_p: 5 is not a number in \(0, 1\]$"),
        ("+attribute_order=[quality]", r"^attribute_order: retired: chat.py writes .* in the order its folder records"),
        ("+generate.system=x", r"^generate.system: unknown setting \(known: max_new_tokens, .*system_prompt\)$"),
        ("+retrieval.index_dir=/tmp/x", r"^retrieval.index_dir: set, but no retrieval is chosen"),
    ],
)
def test_a_setting_chat_would_ignore_or_misread_is_refused_naming_its_key(tmp_path, override, message):
    with pytest.raises(ChipadaptError, match=message):
        check_chat_config(chat_config([override], tmp_path))


def test_the_documented_settings_pass(tmp_path):
    check_chat_config(chat_config(["generate.system_prompt=You review RTL.", "generate.temperature=0.7"], tmp_path))


def test_a_causal_lm_folder_is_refused_as_the_retrieval_encoder(tmp_path):
    folder = tmp_path / "llm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    cfg = chat_config(["retrieval=openroad", f"retrieval.encoders.minilm.path={folder}"], tmp_path)
    with pytest.raises(ChipadaptError, match=rf"^retrieval.encoders.minilm.path: {folder} holds a generative model"):
        check_chat_config(cfg)
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    check_chat_config(cfg)  # an encoder's folder


def test_retrieval_index_dir_keeps_the_dense_index_for_the_next_session(tmp_path, monkeypatch):
    """Before, chat built its retrievers without it: nothing was kept, yet the log said to set it."""
    import chipadapt.retrieval.build as build
    from chipadapt.chat_session import ChatSession

    seen = {}

    class Model:
        config = None

    class Retriever:
        def index(self, passages):
            pass

    def make_retrievers(encoders, dense, bm25, hybrid, index_root=None):
        seen["index_root"] = index_root
        return {"hybrid": Retriever()}

    monkeypatch.setattr(build, "make_retrievers", make_retrievers)
    monkeypatch.setattr(build, "load_passages", lambda path, spec, key: [])
    monkeypatch.setattr("chipadapt.chat_session.resolve_model_folder", lambda cfg: tmp_path / "model")
    monkeypatch.setattr(
        "chipadapt.chat_session.load_for_inference",
        lambda folder, *a: type("L", (), {"model": Model(), "tokenizer": object()})(),
    )
    monkeypatch.setattr("chipadapt.chat_session.recorded_attribute_order", lambda folder: None)
    cfg = chat_config(["retrieval=openroad", f"+retrieval.index_dir={tmp_path / 'idx'}"], tmp_path)
    cfg.template = {"_target_": "builtins.dict", "_partial_": True}
    ChatSession(cfg)
    assert seen["index_root"] == str(tmp_path / "idx")


def test_the_retired_attribute_order_is_refused_on_the_command_line_and_in_a_config(tmp_path):
    """chat.py's attribute_order has no reader since attributes need the order the model's folder records."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict

    from chipadapt.cli import describe_hydra_error

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(HydraException) as composed:
            compose("chat", overrides=["model=tiny", "attribute_order=[quality,humor]"])
    said = describe_hydra_error(composed.value)
    assert said.startswith("attribute_order: retired: ") and "steerlm_attribute_order" in said
    cfg = chat_config([], tmp_path)
    with open_dict(cfg):
        cfg.attribute_order = ["quality"]  # as a config of the user's own sets it
    with pytest.raises(ChipadaptError, match=r"^attribute_order: retired: .*leave the setting out$"):
        check_chat_config(cfg)
