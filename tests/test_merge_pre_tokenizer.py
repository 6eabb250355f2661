"""Inputs whose tokenizers share every id but cut text differently before the ids (a chip model trained
on a GGUF conversion without SmolLM2's digit rule, merged with one converted with it) are refused in
one line naming both folders and a text split differently; the same split passes."""

import json

import pytest
from conftest import compose
from test_merge import merge_cfg
from test_merge_vocabulary_rows import variant

from chipadapt.errors import ChipadaptError
from chipadapt.merge.run import run


@pytest.fixture
def tiny(tmp_path):
    from chipadapt.models.hf_folder import resolve_model_folder

    return resolve_model_folder(compose(["model=tiny"], tmp_path / "cfg").model)


def split_digits(folder):
    path = folder / "tokenizer.json"
    spec = json.loads(path.read_text())
    spec["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [{"type": "Digits", "individual_digits": True}, spec["pre_tokenizer"]],
    }
    path.write_text(json.dumps(spec))


def test_tokenizers_that_split_digits_differently_are_refused(tmp_path, tiny):
    chip = variant(tiny, tmp_path / "chip", 512, seed=1)
    instruct = variant(tiny, tmp_path / "instruct", 512, seed=2)
    split_digits(instruct)
    with pytest.raises(ChipadaptError) as err:
        run(merge_cfg("linear", chip, instruct, tmp_path / "merged", lam=0.5))
    message = str(err.value)
    assert "\n" not in message and str(chip) in message and str(instruct) in message
    assert "splits text differently" in message and "2024" in message
    assert "--v2" not in message and "`--v<N>` in its name" in message  # the version of now, whichever it is
    assert not (tmp_path / "merged").exists()


def test_the_same_split_passes(tmp_path, tiny):
    chip = variant(tiny, tmp_path / "chip", 512, seed=1)
    instruct = variant(tiny, tmp_path / "instruct", 512, seed=2)
    split_digits(chip)
    split_digits(instruct)
    run(merge_cfg("linear", chip, instruct, tmp_path / "merged", lam=0.5))
    assert (tmp_path / "merged" / "tokenizer.json").is_file()
