"""Model folders that are not what they claim (trial D): a missing or misshapen tensor, a broken
config.json, a tokenizer of another model or none at all, an uncached hub revision. Each is one
line naming the folder, never a model trained, scored or merged with random or mixed-up weights."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import CONF
from helpers.faults import assert_user_error, run_entry
from helpers.models import tiny_llama
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from chipadapt.errors import ChipadaptError
from chipadapt.models.hf_folder import context_length, load_causal_lm, load_tokenizer, resolve_model_folder
from chipadapt.models.inference import load_for_inference

TOKENIZER_NAMES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A two-layer tiny Llama (tied embeddings, 512-token tokenizer), built once for this module."""
    return tiny_llama(tmp_path_factory.mktemp("tiny"), num_layers=2)


def copy_of(tiny: Path, dest: Path) -> Path:
    shutil.copytree(tiny, dest, ignore=shutil.ignore_patterns(".*"))
    return dest


def edit_weights(folder: Path, edit) -> Path:
    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def edit_config(folder: Path, **changes) -> Path:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | changes))
    return folder


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def merge_cfg(chip, instruct, out: Path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(
            "merge",
            overrides=[
                "merge=chipalign",
                f"models.chip={chip}",
                f"models.instruct={instruct}",
                f"output={out}",
                f"paths.output_dir={out}.run",
            ],
        )


def unrelated_model(dest: Path, vocab_size: int) -> Path:
    """A model of the tiny model's shape whose tokenizer was trained on other text (reversed words):
    its ids mean other tokens, as with a folder holding another family's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from chipadapt.models.tiny import train_tiny_tokenizer

    sample = Path(__file__).resolve().parents[1] / "src/chipadapt/resources/sample_corpus"
    texts = [p.read_text(errors="ignore")[::-1] for p in sorted(sample.rglob("*")) if p.is_file()]
    tokenizer = train_tiny_tokenizer(texts, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


# S3: a missing tensor is refused wherever a model is loaded, and merged only if every tensor is there.
def test_a_missing_tensor_is_refused_by_training_evaluation_and_merge(tiny, tmp_path):
    broken = edit_weights(copy_of(tiny, tmp_path / "missing"), lambda w: w.pop("model.layers.1.mlp.down_proj.weight"))
    for load in (
        lambda: load_causal_lm(broken, "float32", "sdpa"),
        lambda: load_for_inference(broken, "float32", "sdpa"),
    ):
        with pytest.raises(ChipadaptError) as err:
            load()
        message = one_line(err)
        assert message.startswith(f"model.path: {broken} lacks trained weights for model.layers.1.mlp.down_proj.weight")
    # Both merge inputs lack it: the streamed merge would publish a model without it.
    other = edit_weights(copy_of(tiny, tmp_path / "missing2"), lambda w: w.pop("model.layers.1.mlp.down_proj.weight"))
    with pytest.raises(ChipadaptError) as err:
        from chipadapt.merge.run import run

        run(merge_cfg(broken, other, tmp_path / "merged"))
    assert one_line(err).startswith(
        f"models.chip: {broken} lacks trained weights for model.layers.1.mlp.down_proj.weight"
    )
    assert not (tmp_path / "merged").exists()


def test_train_refuses_a_missing_tensor_before_it_prepares_any_data(tiny, tmp_path):
    """The weights are checked from the files' headers first: data preparation can take hours, and a
    model that cannot train must not be found out only after it. The data here is broken too (line 2),
    and the model's error is the one reported."""
    broken = edit_weights(copy_of(tiny, tmp_path / "missing"), lambda w: w.pop("model.layers.1.mlp.down_proj.weight"))
    bad_data = tmp_path / "bad.jsonl"
    bad_data.write_text('{"text": "module a; endmodule"}\n{not json\n')
    proc = run_entry(
        "train.py",
        [
            "model=tiny",
            f"model.path={broken}",
            f"+data.sources.mine.path={bad_data}",
            "trainer.max_steps=1",
            "data.seq_len=64",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
    )
    assert_user_error(proc, f"model.path: {broken} lacks trained weights for model.layers.1.mlp.down_proj.weight")


def test_a_tied_lm_head_is_not_missing_but_an_extra_tensor_is_refused(tiny, tmp_path):
    assert "lm_head.weight" not in load_file(tiny / "model.safetensors")  # tied: stored once
    assert load_causal_lm(tiny, "float32", "sdpa").config.num_hidden_layers == 2
    extra = edit_weights(
        copy_of(tiny, tmp_path / "extra"), lambda w: w.update({"model.layers.7.mlp.up_proj.weight": torch.zeros(2)})
    )
    with pytest.raises(ChipadaptError) as err:
        load_causal_lm(extra, "float32", "sdpa")
    assert "holds weights model.layers.7.mlp.up_proj.weight" in one_line(err)
    # An untied config without an lm_head: the head would be random.
    untied = edit_config(copy_of(tiny, tmp_path / "untied"), tie_word_embeddings=False)
    with pytest.raises(ChipadaptError, match="lacks trained weights for lm_head.weight"):
        load_causal_lm(untied, "float32", "sdpa")


# M1: a config.json of another size is one line naming the first misshapen tensor, without the table.
def test_a_wrong_hidden_size_names_the_first_mismatched_tensor(tiny, tmp_path, capfd):
    wrong = edit_config(copy_of(tiny, tmp_path / "hidden"), hidden_size=64)
    with pytest.raises(ChipadaptError) as err:
        load_causal_lm(wrong, "float32", "sdpa")
    message = one_line(err)
    assert "tensor model.embed_tokens.weight has shape [512, 32] in the weights but [512, 64]" in message
    assert "ignore_mismatched_sizes" not in message
    assert "LOAD REPORT" not in capfd.readouterr().err
    # merge.py checks each input against its own config.json before any work.
    with pytest.raises(ChipadaptError, match=r"models.chip: .*tensor model.embed_tokens.weight has shape \[512, 32\]"):
        from chipadapt.merge.run import run

        run(merge_cfg(wrong, edit_config(copy_of(tiny, tmp_path / "hidden2"), hidden_size=64), tmp_path / "m"))


# C1: a broken config.json is one line naming it, in train.py's path too (check_seq_len).
def test_a_broken_config_json_is_one_line_naming_it(tiny, tmp_path):
    broken = copy_of(tiny, tmp_path / "brokenjson")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ChipadaptError, match=r"config.json: not valid JSON"):
        context_length(broken)
    with pytest.raises(ChipadaptError, match=r"^model.path: .*brokenjson/config.json: not valid JSON"):
        resolve_model_folder(OmegaConf.create({"path": str(broken), "source": None}))
    proc = run_entry(
        "train.py",
        [
            "model=tiny",
            f"model.path={broken}",
            "trainer.max_steps=1",
            "data.seq_len=64",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
    )
    assert_user_error(proc, "config.json: not valid JSON")


# C4: a tokenizer with ids past the embedding's rows is refused when loaded.
def test_a_tokenizer_larger_than_the_embedding_is_refused(tiny, tmp_path):
    folder = unrelated_model(tmp_path / "small", 300)
    for name in TOKENIZER_NAMES:  # the tiny model's 512-token tokenizer on a 300-row model
        (folder / name).unlink(missing_ok=True)
        if (tiny / name).is_file():
            shutil.copy2(tiny / name, folder / name)
    with pytest.raises(ChipadaptError) as err:
        load_tokenizer(folder)
    assert "has 512 token ids but the model has 300 embedding rows" in one_line(err)
    with pytest.raises(ChipadaptError, match="300 embedding rows"):
        load_for_inference(folder, "float32", "sdpa")


def test_only_special_tokens_past_the_embedding_are_said_not_refused(tiny, tmp_path, caplog):
    """Gemma-3 270M/1B: <image_soft_token> has id vocab_size, one past the rows; no text produces it."""
    import json
    import logging

    folder = copy_of(tiny, tmp_path / "gemma_like")
    rows = json.loads((folder / "config.json").read_text())["vocab_size"]
    tokenizer = load_tokenizer(folder)
    assert max(tokenizer.get_vocab().values()) + 1 == rows
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image_soft_token>"]})
    tokenizer.save_pretrained(folder)
    with caplog.at_level(logging.WARNING):
        assert load_tokenizer(folder).convert_tokens_to_ids("<image_soft_token>") == rows
    assert f"<image_soft_token> ({rows})" in caplog.text and f"past the model's {rows} embedding rows" in caplog.text
    tokenizer.add_tokens(["ordinary_word_token"])  # an ordinary token there would be looked up: refused
    tokenizer.save_pretrained(folder)
    with pytest.raises(ChipadaptError, match="embedding rows"):
        load_tokenizer(folder)


# M2: no tokenizer files is said whole; merge.py refuses a chip model without a tokenizer.
def test_a_folder_without_tokenizer_files_says_so_and_is_not_merged(tiny, tmp_path):
    bare = copy_of(tiny, tmp_path / "notok")
    for name in TOKENIZER_NAMES:
        (bare / name).unlink(missing_ok=True)
    with pytest.raises(ChipadaptError) as err:
        load_tokenizer(bare)
    assert "has no tokenizer files (none of tokenizer.json" in one_line(err)
    from chipadapt.merge.run import run

    with pytest.raises(ChipadaptError, match=r"^models.chip: .*notok has no tokenizer files"):
        run(merge_cfg(bare, tiny, tmp_path / "merged"))
    assert not (tmp_path / "merged").exists()


# S4: unrelated vocabularies are not merged row by row (the augmented case: test_merge.py).
@pytest.mark.parametrize("vocab_size", [640, 512])
def test_merge_refuses_unrelated_tokenizers(tiny, tmp_path, vocab_size):
    from chipadapt.merge.run import run

    chip = unrelated_model(tmp_path / "chip", vocab_size)
    with pytest.raises(ChipadaptError) as err:
        run(merge_cfg(chip, tiny, tmp_path / "merged"))
    message = one_line(err)
    assert message.startswith(f"models.instruct: the tokenizer of {tiny}") and "nor a prefix of it" in message
    assert not (tmp_path / "merged").exists()


# M5: a cached repo at an uncached revision names the revision and the cached ones.
def test_an_uncached_revision_of_a_cached_repo_names_the_revision(tiny, tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    from chipadapt.models.locate import locate_model

    snapshot = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--me--tinyllama"
    shutil.copytree(tiny, repo / "snapshots" / snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert locate_model("me/tinyllama", "model.path") == repo / "snapshots" / snapshot
    with pytest.raises(ChipadaptError) as err:
        locate_model("me/tinyllama@v9", "model.path")
    message = one_line(err)
    assert "me/tinyllama is in the Hugging Face cache" in message and "not at revision v9" in message
    assert "cached: main (01234567)" in message and "not in the Hugging Face cache" not in message
