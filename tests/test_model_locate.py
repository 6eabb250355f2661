"""Model keys accept a local folder, a hub id resolved through the Hugging Face cache, or a GGUF file."""

import shutil

import pytest
from helpers.models import tiny_llama
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.models.locate import locate_model

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def hub_cache(tmp_path, tiny_folder, monkeypatch):
    """A Hugging Face cache holding `tiny-org/tiny-llama` as `hf download` lays it out, hub offline."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    repo = cache / "models--tiny-org--tiny-llama"
    shutil.copytree(tiny_folder, repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_id_resolves_to_the_cached_snapshot_offline(hub_cache):
    folder = locate_model("tiny-org/tiny-llama", "model.path")
    assert folder == hub_cache / "models--tiny-org--tiny-llama" / "snapshots" / SNAPSHOT
    assert locate_model(f"tiny-org/tiny-llama@{SNAPSHOT}", "model.path") == folder


def test_hub_id_works_for_model_path_and_merge_inputs(hub_cache, tmp_path):
    from chipadapt.merge.io import SafetensorsModel
    from chipadapt.models.hf_folder import load_causal_lm, resolve_model_folder

    cfg = OmegaConf.create({"path": "tiny-org/tiny-llama", "source": None})
    folder = resolve_model_folder(cfg)
    assert load_causal_lm(folder, "float32", "sdpa").config.num_hidden_layers == 1
    assert SafetensorsModel("tiny-org/tiny-llama", "models.chip").folder == folder


def test_hub_id_not_cached_offline_is_one_line(hub_cache):
    with pytest.raises(ChipadaptError) as err:
        locate_model("meta-llama/Llama-2-7b-hf", "models.instruct")
    message = str(err.value)
    assert "\n" not in message and message.startswith("models.instruct: meta-llama/Llama-2-7b-hf")
    assert "HF_HUB_OFFLINE=1" in message and "not in the Hugging Face cache" in message


def test_missing_paths_and_plain_files_are_errors(tmp_path, hub_cache):
    with pytest.raises(ChipadaptError, match="does not exist"):
        locate_model(str(tmp_path / "no" / "such" / "model"), "model.path")
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ChipadaptError, match="is a file"):
        locate_model(tmp_path / "weights.txt", "model.path")


def test_gguf_file_is_converted_once_into_the_cache(tmp_path, monkeypatch):
    import chipadapt.models.gguf_import as gguf_import

    gguf = tmp_path / "model.Q4_0.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("CHIPADAPT_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_convert(source, name, dest, key):  # the real conversion is covered by test_gguf_import
        calls.append((source, name, key))
        dest.mkdir(parents=True)
        (dest / "config.json").write_text("{}")
        return dest

    monkeypatch.setattr(gguf_import, "convert_gguf", fake_convert)
    first = locate_model(str(gguf), "model.path")
    second = locate_model(str(gguf), "model.path")
    assert first == second and first.parent == tmp_path / "cache" / "models" and len(calls) == 1
    assert calls[0] == (tmp_path, "model.Q4_0.gguf", "model.path")
