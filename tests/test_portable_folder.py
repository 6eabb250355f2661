"""Folders we write load under transformers 4.x (vLLM, TGI, older lm-eval installs) as under 5.x:
4.x refuses the `TokenizersBackend` class, reads no chat_template.jinja, and reads rotary settings
only from the top level (SmolLM2's rope_theta 100000 would silently become 10000)."""

import json

from helpers.models import tiny_llama
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from chipadapt.models.hf_folder import save_hf_folder
from chipadapt.models.portable_folder import make_portable


def test_a_saved_model_folder_carries_the_4x_spellings_and_still_loads_the_same(tmp_path):
    source = tiny_llama(tmp_path / "cache")
    model = AutoModelForCausalLM.from_pretrained(source)
    model.config.rope_parameters = {"rope_theta": 100000.0, "rope_type": "default"}
    tokenizer = AutoTokenizer.from_pretrained(source)
    out = save_hf_folder(model, tokenizer, tmp_path / "model")

    config = json.loads((out / "config.json").read_text())
    assert config["rope_theta"] == 100000.0 and config.get("rope_scaling") is None
    assert config["torch_dtype"] == config["dtype"]
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tok_config["chat_template"] == (out / "chat_template.jinja").read_text()

    # transformers 5 reads the folder exactly as before.
    again = AutoTokenizer.from_pretrained(out)
    assert again("module counter;").input_ids == tokenizer("module counter;").input_ids
    assert again.chat_template == tokenizer.chat_template
    assert AutoConfig.from_pretrained(out).rope_parameters["rope_theta"] == 100000.0


def test_scaled_rotary_settings_are_mirrored_and_per_type_ones_left_alone(tmp_path):
    llama3 = {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "rope_parameters": llama3}))
    make_portable(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rope_theta"] == 500000.0
    assert config["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}

    per_type = {"full_attention": {"rope_theta": 1e6}, "sliding_attention": {"rope_theta": 1e4}}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3_text", "rope_parameters": per_type}))
    make_portable(tmp_path)
    assert "rope_theta" not in json.loads((tmp_path / "config.json").read_text())


def test_a_merged_folder_is_portable_too(tmp_path):
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    from chipadapt.merge.run import run

    source = tiny_llama(tmp_path / "cache")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="merge",
            overrides=[
                "merge=chipalign",
                f"models.chip={source}",
                f"models.instruct={source}",
                f"output={tmp_path / 'merged'}",
                f"paths.output_dir={tmp_path / 'run'}",
            ],
        )
    run(cfg)
    tok_config = json.loads((tmp_path / "merged" / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast" and "chat_template" in tok_config
    assert "rope_theta" in json.loads((tmp_path / "merged" / "config.json").read_text())
