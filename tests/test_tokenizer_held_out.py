"""The domain tokenizer and DAPT's held-out documents: tokens are chosen on the training documents only,
the saving is reported on the held-out ones with a paired interval and n, the tokenizer stage records
its data and base model by content, and a stage that builds no domain tokenizer refuses one."""

import json

import pytest
from conftest import compose, read_manifest, write_jsonl
from hydra.utils import instantiate
from omegaconf import OmegaConf

from chipadapt.data.holdout import held_out_mask
from chipadapt.data.source_spec import SourceSpec
from chipadapt.data.sources import read_source
from chipadapt.errors import ChipadaptError
from chipadapt.pipeline import train
from chipadapt.tokenizer.augment import DomainTokenizer
from chipadapt.tokenizer.report import reduction_table

LINE = "module fifo_ctrl(input clk_i, input rst_ni); assign wready_o = !fifo_full; // posedge clk_i"
SECRET = "zorblaxquint"  # a word only the held-out documents hold


@pytest.fixture
def tiny_folder(tmp_path):
    from chipadapt.models.hf_folder import resolve_model_folder

    return resolve_model_folder(compose(["model=tiny"], tmp_path).model)


def corpus(tmp_path, fraction: float, documents: int = 40):
    """A JSONL source whose held-out documents (by DAPT's rule) alone repeat SECRET."""
    path = write_jsonl(tmp_path / "rtl.jsonl", [{"text": LINE}] * documents)
    ids = [d.doc_id for d in read_source(SourceSpec(path=str(path)), "test")]
    held = held_out_mask(ids, fraction)
    assert 6 <= held.sum() < documents  # enough held-out documents for a bounded interval
    texts = [" ".join([LINE] * (1 + i % 3) + ["count", str(i)]) for i in range(documents)]  # unequal savings
    write_jsonl(path, [{"text": f"{t} {' '.join([SECRET] * 20) if h else ''}"} for t, h in zip(texts, held)])
    return path, int(held.sum()), " ".join(t for t, h in zip(texts, held) if not h)


def adapter(tmp_path, path, held_out) -> DomainTokenizer:
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": "The river flows past the old mill."}] * 5)
    return DomainTokenizer(
        cache_dir=str(tmp_path / "cache"),
        sources=OmegaConf.create({"rtl": {"path": str(path)}}),
        report_general=OmegaConf.create({"prose": {"path": str(general)}}),
        domain_vocab_size=600,
        max_new_tokens=60,
        max_general_per_million=0.0,
        min_savings=2,
        max_pieces=6,
        init={"input": "mean", "output": "mean"},
        held_out=held_out,
    )


def test_tokens_are_chosen_on_the_training_documents_and_the_saving_is_reported_on_the_held_out_ones(
    tmp_path, tiny_folder
):
    path, held, training_text = corpus(tmp_path, 0.3)
    folder = adapter(tmp_path, path, 0.3)(tiny_folder)
    report = json.loads((folder / "tokenizer_report.json").read_text())
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    new_pieces = [t.replace("\u0120", " ") for t, i in vocab.items() if i >= report["vocab_size_before"]]
    assert report["new_tokens"] > 0
    # Every new token occurs in the training documents: none comes from the held-out-only word (the
    # selection on every document added 'blax', 'zor', 'qu' and 'int' of it).
    assert [p for p in new_pieces if p not in training_text] == []
    assert report["documents"] == {"rtl": {"selection": 40 - held, "held_out": held, "held_out_copies_dropped": 0}}

    row = report["domain_held_out_reduction"]
    assert row["documents"] == held and row["tokens_after"] < row["tokens_before"]
    low, high = row["reduction_ci_pct"]
    assert low is not None and high is not None and low < row["reduction_pct"] < high
    assert report["domain_reduction_in_sample_pct"] > 0
    # The same corpus with nothing held out is another build (the held-out rule is in the key).
    assert adapter(tmp_path, path, None).build_folder(tiny_folder) != folder


def test_nothing_held_out_says_so_instead_of_an_interval(tmp_path, tiny_folder):
    from rich.console import Console

    path, _, _ = corpus(tmp_path, 0.3)
    folder = adapter(tmp_path, path, None)(tiny_folder)
    report = json.loads((folder / "tokenizer_report.json").read_text())
    assert report["domain_held_out"] == {} and report["domain_held_out_reduction"] is None
    assert report["documents"]["rtl"] == {"selection": 40, "held_out": 0, "held_out_copies_dropped": 0}
    console = Console(width=200, record=True)
    console.print(reduction_table(report))
    text = console.export_text()
    assert "none held out" in text and "domain, in-sample" in text


def test_the_tokenizer_stage_records_its_data_base_model_and_held_out_saving(tmp_path):
    run = tmp_path / "tok"
    metrics = train(compose(["stage=tokenizer", "model=tiny", "tokenizer.adapt.starting_bpb=null"], run))
    manifest = read_manifest(run)
    sources = [f"data.sources.{n}" for n in ("docs", "bugs", "rtl", "scripts")] + ["data.val_sources.general"]
    for key in ["base_model", *sources]:
        assert manifest["inputs"][key]["fingerprint"], key
    assert manifest["data"]["documents"]["rtl"]["held_out"] >= 1
    assert metrics["domain_held_out_documents"] == sum(d["held_out"] for d in manifest["data"]["documents"].values())
    assert "domain_held_out_reduction_pct" in metrics and "domain_reduction_in_sample_pct" in metrics
    assert manifest["metrics"] == metrics


@pytest.mark.parametrize("data", ["data=sft_sample", "data=sft_blend"])
def test_sft_refuses_an_augmented_tokenizer_naming_the_key_and_the_way(tmp_path, data):
    cfg = compose(["stage=sft", "model=tiny", "tokenizer=augmented_small", data], tmp_path / "run")
    with pytest.raises(ChipadaptError, match=r"^tokenizer: stage=sft does not build .*model\.path=RUN/model"):
        try:
            instantiate(cfg.tokenizer.adapt)
        except Exception as err:  # Hydra wraps what the target raises
            raise (err.__cause__ or err) from None
