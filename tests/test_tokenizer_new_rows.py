"""The new embedding rows of an augmented tokenizer: the static init rules, the warm-up, the input fit
and the output fit, each measured on the starting model (bits/byte against the base tokenizer's)."""

import json

import pytest
import torch
from conftest import write_jsonl
from helpers.tokenizer_material import DOMAIN, adapter, build_llama2_style, texts
from transformers import AutoModelForCausalLM, AutoTokenizer

from chipadapt.data.sources import Document
from chipadapt.errors import ChipadaptError
from chipadapt.tokenizer.starting_bpb import StartingBpb
from chipadapt.tokenizer.warmup import EmbeddingWarmup


@pytest.fixture(scope="module")
def llama2_style(tmp_path_factory):
    """(folder with tokenizer.json, folder with only tokenizer.model): helpers/tokenizer_material.py."""
    return build_llama2_style(tmp_path_factory.mktemp("llama2_style"), pytest.importorskip("sentencepiece"))


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """The tiny byte-level Llama trained briefly on the domain text, so its logits mean something."""
    from conftest import compose

    from chipadapt.models.hf_folder import resolve_model_folder

    root = tmp_path_factory.mktemp("trained_tiny")
    folder = resolve_model_folder(compose(["model=tiny"], root).model)
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    ids = torch.tensor([i for t in texts(DOMAIN) for i in tokenizer(t).input_ids])
    windows = ids[: len(ids) // 65 * 65].view(-1, 65)
    optimizer, generator = torch.optim.AdamW(model.parameters(), lr=3e-3), torch.Generator().manual_seed(0)
    model.train()
    for _ in range(300):
        batch = windows[torch.randint(len(windows), (8,), generator=generator)]
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root / "model"


def ruler(outputs: list[str], held_out: float | None, warmup_steps: list[int] = ()) -> StartingBpb:
    """The starting bpb over 6,000 characters per source, in blocks of 2,000, with a 128-token window."""
    return StartingBpb(outputs, held_out, 6000, 6000, 2000, 128, list(warmup_steps))


def test_mean_output_rows_start_closer_to_the_base_tokenizer_than_zero(tmp_path, trained_tiny):
    corpus = write_jsonl(tmp_path / "domain.jsonl", [{"text": t} for t in texts(DOMAIN)])
    # Blocks of 1,000 characters: six of them, the fewest an exact paired test can resolve (2/2**6 < 0.05).
    starting = StartingBpb(["zero", "mean", "vocab_mean"], None, 6000, 6000, 1000, 128, [])
    folder = adapter(tmp_path, domain=corpus, starting_bpb=starting, max_new_tokens=40)(trained_tiny)
    report = json.loads((folder / "tokenizer_report.json").read_text())
    bpb = report["starting_bpb"]
    base, outputs = bpb["base_tokenizer"]["domain_bpb"], bpb["outputs"]
    assert report["init"] == {"input": "mean", "output": "mean"}
    assert abs(outputs["mean"]["domain_bpb"] - base) < abs(outputs["zero"]["domain_bpb"] - base)
    assert outputs["zero"]["domain_minus_base"] > 0
    # Paired with the base block by block: zero rows cost bits on every block, so the interval excludes 0.
    lo, hi = outputs["zero"]["domain_minus_base_ci"]
    assert 0 < lo <= outputs["zero"]["domain_minus_base"] <= hi
    assert outputs["zero"]["domain_blocks"] >= 6  # 6,000 characters in blocks of at most 1,000
    assert outputs["zero"]["general_blocks"] >= 1 and len(outputs["zero"]["general_minus_base_ci"]) == 2
    # The saved model carries the chosen rule: new output rows are their pieces' mean, not zero.
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert (
        torch.count_nonzero(
            model.get_output_embeddings().weight[report["old_rows"] : report["old_rows"] + report["new_tokens"]]
        )
        > 0
    )


def test_warmup_of_the_new_rows_lowers_starting_bpb_and_leaves_every_base_weight_bit_identical(tmp_path, trained_tiny):
    # Documents held out by hash: the warm-up trains on the others, the starting bpb scores these.
    corpus = write_jsonl(tmp_path / "domain.jsonl", [{"text": t, "id": f"doc{i}"} for i, t in enumerate(texts(DOMAIN))])
    starting = ruler(["mean"], 0.3, [10])
    warmup = EmbeddingWarmup(steps=40, lr=3e-3, seq_len=64, batch_size=4, general_fraction=0.0, held_out=0.3, seed=0)
    folder = adapter(tmp_path, domain=corpus, starting_bpb=starting, warmup=warmup, max_new_tokens=40)(trained_tiny)
    report = json.loads((folder / "tokenizer_report.json").read_text())
    outputs = report["starting_bpb"]["outputs"]
    assert outputs["mean+warmup"]["domain_bpb"] < outputs["mean"]["domain_bpb"]
    assert set(report["starting_bpb"]["warmup_steps"]) == {"10", "40"}
    assert report["warmup"]["steps"] == 40 and report["warmup"]["tokens_seen"] == 40 * 4 * 64
    assert report["settings"]["init"]["warmup"]["steps"] == 40  # in the cache key

    base, warmed = AutoModelForCausalLM.from_pretrained(trained_tiny), AutoModelForCausalLM.from_pretrained(folder)
    old, new = report["old_rows"], slice(report["old_rows"], report["old_rows"] + report["new_tokens"])
    base_rows = base.get_input_embeddings().weight  # tied: input and output rows are the same
    assert torch.equal(warmed.get_input_embeddings().weight[:old], base_rows)
    assert torch.equal(warmed.get_output_embeddings().weight[:old], base_rows)
    body = {n: p for n, p in base.named_parameters() if "embed" not in n and "lm_head" not in n}
    assert body and all(torch.equal(p, dict(warmed.named_parameters())[n]) for n, p in body.items())
    # ... while the new rows moved away from their static init.
    static = AutoModelForCausalLM.from_pretrained(
        adapter(tmp_path / "static", domain=corpus, max_new_tokens=40)(trained_tiny)
    )
    assert not torch.equal(warmed.get_output_embeddings().weight[new], static.get_output_embeddings().weight[new])
    assert not torch.equal(warmed.get_input_embeddings().weight[new], static.get_input_embeddings().weight[new])


def test_output_fit_lowers_starting_bpb_and_changes_only_the_new_output_rows(tmp_path, trained_tiny):
    from chipadapt.tokenizer.output_fit import OutputRowFit

    corpus = write_jsonl(tmp_path / "domain.jsonl", [{"text": t, "id": f"doc{i}"} for i, t in enumerate(texts(DOMAIN))])
    starting = ruler(["mean"], 0.3)
    fit = OutputRowFit(
        windows=32, seq_len=64, batch_size=8, general_fraction=0.0, l2=50.0, iterations=15, held_out=0.3, seed=0
    )
    folder = adapter(tmp_path, domain=corpus, starting_bpb=starting, fit=fit, max_new_tokens=40)(trained_tiny)
    report = json.loads((folder / "tokenizer_report.json").read_text())
    outputs = report["starting_bpb"]["outputs"]
    # Scored on held-out documents the fit never saw.
    assert outputs["mean+fit"]["domain_bpb"] < outputs["mean"]["domain_bpb"]
    summary = report["output_fit"]
    assert summary["positions"] == 32 * 64 and summary["new_token_targets"] > 0
    assert summary["last_loss"] < summary["first_loss"]
    assert report["settings"]["init"]["fit"]["l2"] == 50.0  # in the cache key

    base, fitted = AutoModelForCausalLM.from_pretrained(trained_tiny), AutoModelForCausalLM.from_pretrained(folder)
    old, new = report["old_rows"], slice(report["old_rows"], report["old_rows"] + report["new_tokens"])
    base_rows = base.get_input_embeddings().weight  # tied: input and output rows are the same
    assert torch.equal(fitted.get_output_embeddings().weight[:old], base_rows)
    static = AutoModelForCausalLM.from_pretrained(
        adapter(tmp_path / "static", domain=corpus, max_new_tokens=40)(trained_tiny)
    )
    # Input rows as the static init left them; output rows moved.
    assert torch.equal(fitted.get_input_embeddings().weight, static.get_input_embeddings().weight)
    assert not torch.equal(fitted.get_output_embeddings().weight[new], static.get_output_embeddings().weight[new])


def test_output_fit_hidden_states_are_what_the_output_rows_multiply(trained_tiny):
    from chipadapt.tokenizer.output_fit import OutputRowFit
    from chipadapt.tokenizer.windows import TrainingWindows

    tokenizer, model = AutoTokenizer.from_pretrained(trained_tiny), AutoModelForCausalLM.from_pretrained(trained_tiny)
    docs = {"chip": [Document(doc_id=f"d{i}", text=t) for i, t in enumerate(texts(DOMAIN))]}
    sampler = TrainingWindows(tokenizer.backend_tokenizer, docs, {}, None, 33, 0.0, None, "test")
    fit = OutputRowFit(
        windows=4, seq_len=32, batch_size=3, general_fraction=0.0, l2=1.0, iterations=1, held_out=None, seed=0
    )
    hidden, targets = fit._hidden_states(model, sampler)
    batch = sampler.batch(4, torch.Generator().manual_seed(0))  # the same draws
    with torch.no_grad():
        logits = model(input_ids=batch[:, :-1]).logits.reshape(-1, model.config.vocab_size)
    assert torch.allclose(hidden @ model.get_output_embeddings().weight.T, logits, atol=1e-4)
    assert torch.equal(targets, batch[:, 1:].reshape(-1))


def test_input_fit_lowers_starting_bpb_and_changes_only_the_new_input_rows(tmp_path, trained_tiny):
    from chipadapt.tokenizer.input_fit import InputRowFit

    corpus = write_jsonl(tmp_path / "domain.jsonl", [{"text": t, "id": f"doc{i}"} for i, t in enumerate(texts(DOMAIN))])
    starting = ruler(["mean"], 0.3)
    input_fit = InputRowFit(windows=24, seq_len=64, epochs=6, batch_size=4, lr=1e-2, held_out=0.3, seed=0)
    folder = adapter(tmp_path, domain=corpus, starting_bpb=starting, input_fit=input_fit, max_new_tokens=40)(
        trained_tiny
    )
    report = json.loads((folder / "tokenizer_report.json").read_text())
    outputs = report["starting_bpb"]["outputs"]
    # Scored on held-out documents the fit never saw.
    assert outputs["mean+input_fit"]["domain_bpb"] < outputs["mean"]["domain_bpb"]
    summary = report["input_fit"]
    assert summary["windows_used"] == 24 and summary["new_tokens_seen"] > 0
    assert summary["epoch_loss"][-1] < summary["epoch_loss"][0]
    assert report["settings"]["init"]["input_fit"]["lr"] == 1e-2  # in the cache key

    base, fitted = AutoModelForCausalLM.from_pretrained(trained_tiny), AutoModelForCausalLM.from_pretrained(folder)
    old, new = report["old_rows"], slice(report["old_rows"], report["old_rows"] + report["new_tokens"])
    base_rows = base.get_input_embeddings().weight  # tied: input and output rows are the same
    assert torch.equal(fitted.get_input_embeddings().weight[:old], base_rows)
    body = {n: p for n, p in base.named_parameters() if "embed" not in n and "lm_head" not in n}
    assert body and all(torch.equal(p, dict(fitted.named_parameters())[n]) for n, p in body.items())
    static = AutoModelForCausalLM.from_pretrained(
        adapter(tmp_path / "static", domain=corpus, max_new_tokens=40)(trained_tiny)
    )
    # Output rows as the static init left them; the new input rows moved.
    assert torch.equal(fitted.get_output_embeddings().weight, static.get_output_embeddings().weight)
    assert not torch.equal(fitted.get_input_embeddings().weight[new], static.get_input_embeddings().weight[new])


NON_ASCII = " a \u2264 b in \u00b5s \u2014 \u65e5\u672c\u8a9e, \u00fcber "


@pytest.mark.parametrize("family", ["byte_level", "sentencepiece"])
def test_input_fit_pairs_only_token_ends_that_close_the_same_text(tmp_path, trained_tiny, llama2_style, family):
    from chipadapt.tokenizer.input_fit import InputRowFit

    base_folder = trained_tiny if family == "byte_level" else llama2_style[0]
    folder = adapter(tmp_path, max_new_tokens=40)(base_folder)
    base, extended = AutoTokenizer.from_pretrained(base_folder), AutoTokenizer.from_pretrained(folder)
    is_new = [i >= len(base) for i in range(len(extended))]
    fit = InputRowFit(windows=1, seq_len=48, epochs=1, batch_size=1, lr=1e-3, held_out=None, seed=0)
    paired = 0
    # Characters of several bytes (byte pieces that share one end), and windows cut inside them.
    docs = texts(DOMAIN)[:20]
    for text in [NON_ASCII.join(t[k : k + 30] for k in range(0, 600, 30)) for t in docs]:
        pairs = fit._pairs(base.backend_tokenizer, extended.backend_tokenizer, text, is_new)
        if pairs is None:
            continue
        base_ids, aug_ids, aug_at, base_at = pairs
        assert len(base_ids) <= 48 and len(aug_ids) <= len(base_ids)
        assert "\ufffd" not in base.decode(base_ids)  # not cut inside a character
        for i, j in zip(aug_at, base_at):  # the same text up to and including both tokens
            assert extended.decode(aug_ids[: i + 1]) == base.decode(base_ids[: j + 1])
            paired += 1
    assert paired > 0


def test_input_fit_restores_the_model_and_moves_only_rows_of_tokens_it_saw(tmp_path, trained_tiny):
    from chipadapt.tokenizer.input_fit import InputRowFit

    folder = adapter(tmp_path, max_new_tokens=40)(trained_tiny)
    base, extended = AutoTokenizer.from_pretrained(trained_tiny), AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.train()
    before_in = model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    docs = {"chip": [Document(doc_id=f"d{i}", text=t) for i, t in enumerate(texts(DOMAIN))]}
    new_ids = list(range(len(base), len(extended)))
    fit = InputRowFit(windows=6, seq_len=48, epochs=2, batch_size=2, lr=1e-2, held_out=None, seed=0)
    assert fit.run(model, base.backend_tokenizer, extended.backend_tokenizer, docs, []) is None  # nothing to fit
    result = fit.run(model, base.backend_tokenizer, extended.backend_tokenizer, docs, new_ids)

    assert model.training and all(p.requires_grad for p in model.parameters())
    is_new = [i >= len(base) for i in range(len(extended))]
    samples = fit._sample(base.backend_tokenizer, extended.backend_tokenizer, docs, is_new, None)  # the same draws
    seen = sorted({t for _, aug_ids, _, _ in samples for t in aug_ids if is_new[t]})
    unseen = sorted(set(new_ids) - set(seen))
    assert result["new_tokens_seen"] == len(seen) > 0 and unseen
    after_in = model.get_input_embeddings().weight.detach()
    assert torch.equal(after_in[: len(base)], before_in[: len(base)])
    assert torch.equal(after_in[unseen], before_in[unseen])
    assert not torch.equal(after_in[seen], before_in[seen])
    assert torch.equal(model.get_output_embeddings().weight, before_out)


def test_starting_bpb_table_names_every_step_the_new_rows_went_through():
    import io

    from rich.console import Console

    from chipadapt.tokenizer.report import starting_bpb_table

    row = {"domain_bpb": 1.2, "general_bpb": 1.1, "domain_minus_base": 0.1, "general_minus_base": 0.0}
    report = {
        "init": {"output": "mean"},
        "warmup": {"steps": 100, "batch_size": 1, "seq_len": 512},
        "input_fit": {"windows_used": 96},
        "output_fit": {"positions": 153600},
        "starting_bpb": {
            "base_tokenizer": {"domain_bpb": 1.1, "general_bpb": 1.1},
            "input": "mean",
            "outputs": {"mean": row, "mean+warmup+fit": row, "mean+input_fit": row, "mean+warmup+input_fit+fit": row},
        },
    }
    out = io.StringIO()
    Console(file=out, width=300).print(starting_bpb_table(report))
    text = out.getvalue()
    assert "output=mean + warm-up + output fit (153,600 positions)" in text
    assert "output=mean + input fit (96 windows)" in text
    assert "output=mean + warm-up + input fit (96 windows) + output fit (153,600 positions)" in text


def test_bad_warmup_settings_are_one_line_errors():
    with pytest.raises(ChipadaptError, match="tokenizer.adapt.init.warmup") as err:
        EmbeddingWarmup(steps=0, lr=1e-3, seq_len=64, batch_size=1, general_fraction=0.0, held_out=None, seed=0)
    assert "\n" not in str(err.value)
    from chipadapt.tokenizer.output_fit import OutputRowFit

    with pytest.raises(ChipadaptError, match="tokenizer.adapt.init.fit") as err:
        OutputRowFit(
            windows=8, seq_len=64, batch_size=1, general_fraction=0.0, l2=-1.0, iterations=5, held_out=None, seed=0
        )
    assert "\n" not in str(err.value)
    from chipadapt.tokenizer.input_fit import InputRowFit

    with pytest.raises(ChipadaptError, match="tokenizer.adapt.init.input_fit") as err:
        InputRowFit(windows=8, seq_len=64, epochs=0, batch_size=1, lr=1e-3, held_out=None, seed=0)
    assert "\n" not in str(err.value)


def test_text_blocks_cut_at_line_ends_and_join_back():
    from chipadapt.tokenizer.starting_bpb import text_blocks

    text = "module a;\n" * 30 + "x" * 75 + "\nendmodule\n"
    blocks = text_blocks(text, 40)
    assert "".join(blocks) == text
    assert all(len(b) <= 40 for b in blocks)
    assert all(b.endswith("\n") for b in blocks[:7])  # whole lines while lines fit
    assert text_blocks("", 40) == [] and text_blocks("short", 40) == ["short"]
