"""Merging models whose vocabularies differ in length: which tokenizer the merged folder carries, and
where each embedding row comes from.

The tokenizer of one input is the other's with tokens appended: an instruct model's added chat
tokens, or a chip model's domain tokens. Rows every tokenizer has are merged; a row past the shorter
tokenizer belongs to one model's token only (the other model has no row there, or an untrained
padding row) and is copied unmerged from the model that has the token.
"""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import compose
from safetensors.torch import load_file, save_file
from test_merge import merge_cfg
from transformers import AutoModelForCausalLM, AutoTokenizer

from chipadapt.merge.run import run

EMBED = "model.embed_tokens.weight"
CHAT_TOKENS = ["<|user|>", "<|assistant|>"]
# A chat template that needs the instruct model's added tokens (as ChatML needs <|im_start|>).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
DOMAIN_TOKENS = ["always_ff", "posedge", "negedge", "rst_ni", "clk_i", "fifo_wready"]


@pytest.fixture
def tiny(tmp_path) -> Path:
    from chipadapt.models.hf_folder import resolve_model_folder

    return resolve_model_folder(compose(["model=tiny"], tmp_path / "cfg").model)


def variant(source: Path, dest: Path, rows: int, seed: int, added=(), special=False, template=None) -> Path:
    """`source` with seeded noise on every weight (a model trained away from it), its embedding cut or
    extended to `rows` (extra rows random: the trained rows of new tokens, or untrained padding) and
    `added` tokens appended to its tokenizer."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, tensor in load_file(source / "model.safetensors").items():
        tensor = tensor + 0.05 * torch.randn(tensor.shape, generator=generator)
        if name == EMBED:
            extra = torch.randn(max(0, rows - tensor.shape[0]), tensor.shape[1], generator=generator)
            tensor = torch.cat([tensor[:rows], extra])
        tensors[name] = tensor.contiguous()
    dest.mkdir()
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((source / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps(config | {"vocab_size": rows}))
    tokenizer = AutoTokenizer.from_pretrained(source)
    if added:
        if special:
            tokenizer.add_special_tokens({"additional_special_tokens": list(added)})
        else:
            tokenizer.add_tokens(list(added))
    if template:
        tokenizer.chat_template = template
    tokenizer.save_pretrained(dest)
    if (source / "generation_config.json").is_file():
        shutil.copy2(source / "generation_config.json", dest / "generation_config.json")
    return dest


def diagnostics(out: Path) -> dict[str, dict]:
    with open(out / "merge_diagnostics.csv", newline="") as handle:
        return {row["tensor"]: row for row in csv.DictReader(handle)}


@pytest.mark.parametrize(("chip_rows", "instruct_rows"), [(512, 514), (576, 576)])
def test_the_instruct_models_added_chat_tokens_are_kept_when_the_chip_vocabulary_is_its_prefix(
    tmp_path, tiny, chip_rows, instruct_rows
):
    """The chip model's tokenizer is the instruct one without its chat tokens: the merged folder must
    carry the instruct tokenizer (its chat template works), with a row for every one of its tokens,
    taken unmerged from the instruct model; config.json says the rows the weights have."""
    tokens = len(AutoTokenizer.from_pretrained(tiny))
    assert tokens == 512
    chip = variant(tiny, tmp_path / "chip", chip_rows, seed=1)
    instruct = variant(
        tiny, tmp_path / "instruct", instruct_rows, seed=2, added=CHAT_TOKENS, special=True, template=CHAT_TEMPLATE
    )
    out = tmp_path / "merged"
    summary = run(merge_cfg("chipalign", chip, instruct, out, lam=0.5))

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert (out / "tokenizer.json").read_text() == (instruct / "tokenizer.json").read_text()
    assert tokenizer.convert_tokens_to_ids(CHAT_TOKENS) == [tokens, tokens + 1]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    prompt = prompt["input_ids"] if isinstance(prompt, dict) or hasattr(prompt, "keys") else prompt
    assert prompt[0] == tokens and prompt[-1] == tokens + 1  # each chat token one id, not its bytes

    merged, c, i = (load_file(p / "model.safetensors")[EMBED] for p in (out, chip, instruct))
    config = json.loads((out / "config.json").read_text())
    assert merged.shape[0] == config["vocab_size"] == instruct_rows
    assert torch.equal(merged[tokens:], i[tokens:])  # the chat tokens' trained rows, unmerged
    assert not torch.equal(merged[:tokens], c[:tokens]) and not torch.equal(merged[:tokens], i[:tokens])
    assert summary["extra_rows"] == {EMBED: instruct_rows - tokens}
    assert summary["vocabulary"]["tokenizer_from"] == "models.instruct"
    row = diagnostics(out)[EMBED]
    assert int(row["extra_rows"]) == instruct_rows - tokens and row["extra_rows_from"] == "models.instruct"
    # The angle and norms are those of the rows that were merged.
    assert float(row["norm_chip"]) == pytest.approx(float(c[:tokens].double().norm()), rel=1e-6)

    model = AutoModelForCausalLM.from_pretrained(out)
    generated = model.generate(torch.tensor([prompt]), max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == len(prompt) + 3


@pytest.mark.parametrize(("chip_rows", "instruct_rows"), [(576, 576), (518, 576), (576, 512)])
def test_the_chip_models_domain_rows_are_not_averaged_with_the_instruct_models_padding(
    tmp_path, tiny, chip_rows, instruct_rows
):
    """An augmented chip vocabulary, against an instruct embedding padded past its tokenizer (to a
    multiple of 64): the domain tokens' rows come from the chip model unmerged, not averaged with the
    instruct model's untrained padding rows; the merge report counts them."""
    tokens = 512
    chip = variant(tiny, tmp_path / "chip", chip_rows, seed=1, added=DOMAIN_TOKENS)
    instruct = variant(tiny, tmp_path / "instruct", instruct_rows, seed=2)
    out = tmp_path / "merged"
    summary = run(merge_cfg("chipalign", chip, instruct, out, lam=0.5))

    merged, c, i = (load_file(p / "model.safetensors")[EMBED] for p in (out, chip, instruct))
    assert merged.shape[0] == json.loads((out / "config.json").read_text())["vocab_size"] == chip_rows
    assert torch.equal(merged[tokens:], c[tokens:])
    assert not torch.equal(merged[:tokens], c[:tokens]) and not torch.equal(merged[:tokens], i[:tokens])
    assert (out / "tokenizer.json").read_text() == (chip / "tokenizer.json").read_text()
    assert summary["extra_rows"] == {EMBED: chip_rows - tokens}
    assert summary["vocabulary"] == {
        "tokenizer_from": "models.chip",
        "tokens": {"models.chip": tokens + len(DOMAIN_TOKENS), "models.instruct": tokens},
    }
    row = diagnostics(out)[EMBED]
    assert row["extra_rows_from"] == "models.chip"
    # mergekit redoes it with the same tokenizer only when told to take the union of the vocabularies.
    assert yaml.safe_load((out / "mergekit_config.yml").read_text())["tokenizer_source"] == "union"
    assert float(row["norm_instruct"]) == pytest.approx(float(i[:tokens].double().norm()), rel=1e-6)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("always_ff posedge", return_tensors="pt").input_ids
    assert ids.max() >= tokens  # the domain tokens are used, and have their rows
    assert AutoModelForCausalLM.from_pretrained(out)(ids).logits.shape[-1] == chip_rows


def test_identical_tokenizers_with_padded_embeddings_still_reproduce_the_inputs_at_the_endpoints(tmp_path, tiny):
    """One tokenizer for both: every row the embeddings have is merged, padding included, so lam=0
    and lam=1 copy the inputs exactly (as before)."""
    chip = variant(tiny, tmp_path / "chip", 576, seed=1)
    instruct = variant(tiny, tmp_path / "instruct", 576, seed=2)
    for lam, source in ((0.0, instruct), (1.0, chip)):
        out = tmp_path / f"m{lam}"
        summary = run(merge_cfg("chipalign", chip, instruct, out, lam=lam))
        assert torch.equal(load_file(out / "model.safetensors")[EMBED], load_file(source / "model.safetensors")[EMBED])
        assert summary["extra_rows"] == {}
        assert "tokenizer_source" not in yaml.safe_load((out / "mergekit_config.yml").read_text())


def test_a_merge_with_a_base_model_copies_the_domain_rows_too(tmp_path, tiny):
    """TIES reads a third model (the base): rows past the shortest of the three tokenizers are the
    chip model's domain tokens, copied; the rest is merged whole (TIES is not chunkable)."""
    chip = variant(tiny, tmp_path / "chip", 576, seed=1, added=DOMAIN_TOKENS)
    instruct = variant(tiny, tmp_path / "instruct", 576, seed=2)
    base = variant(tiny, tmp_path / "base", 576, seed=3)
    out = tmp_path / "merged"
    summary = run(merge_cfg("ties", chip, instruct, out, lam=0.5, base=base))
    merged, c = (load_file(p / "model.safetensors")[EMBED] for p in (out, chip))
    assert torch.equal(merged[512:], c[512:]) and not torch.equal(merged[:512], c[:512])
    assert summary["extra_rows"] == {EMBED: 64} and summary["vocabulary"]["tokenizer_from"] == "models.chip"
