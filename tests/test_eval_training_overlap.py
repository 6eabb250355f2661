"""Perplexity on documents the evaluated model trained on is in-sample: the default domain split scores
only what DAPT holds out, and any split's trained-on documents are counted, marked and warned about."""

import json
import logging
import shutil

import pytest
from conftest import ROOT, write_jsonl
from helpers.models import tiny_llama
from omegaconf import OmegaConf

import chipadapt.config_resolvers  # noqa: F401  (chipadapt_resource)
from chipadapt.data.holdout import held_out_mask
from chipadapt.data.source_spec import source_spec
from chipadapt.data.sources import read_source

DAPT_TARGET = "chipadapt.data.datamodule.PretrainDataModule"


def dapt_manifest(run, sources: dict, val_fraction: float, start: str | None = None) -> None:
    """The parts of a DAPT run's manifest.json the overlap check reads."""
    run.mkdir(parents=True, exist_ok=True)
    record = {
        "kind": "train",
        "config": {
            "stage": {"name": "dapt", "datamodule": {"_target_": DAPT_TARGET}},
            "data": {"val_fraction": val_fraction, "sources": {n: {"path": str(p)} for n, p in sources.items()}},
        },
        "inputs": {
            **({"model": {"path": start}} if start else {}),
            **{f"data.sources.{n}": {"path": str(p.resolve())} for n, p in sources.items()},
        },
    }
    (run / "manifest.json").write_text(json.dumps(record))


def corpus(tmp_path):
    docs = [
        {"text": f"module m{i}(input a, output y); assign y = a ^ {i % 2}; endmodule", "path": f"m{i}.v"}
        for i in range(20)
    ]
    return write_jsonl(tmp_path / "rtl.jsonl", docs), docs


def test_default_domain_split_scores_only_what_dapt_on_the_sample_corpus_holds_out():
    from chipadapt.eval.tasks.perplexity import PerplexityTask

    conf = OmegaConf.load(ROOT / "conf/eval/perplexity.yaml")
    data = OmegaConf.load(ROOT / "conf/data/sample_corpus.yaml")
    task = PerplexityTask(conf.splits, 1024, None, None, None, None)
    scored = {d.text for d in task.documents("domain")}
    held, trained = set(), set()
    for name, values in OmegaConf.to_container(data.sources, resolve=True).items():
        docs = read_source(source_spec(values, name), name)
        mask = held_out_mask([d.doc_id for d in docs], data.val_fraction)
        held |= {d.text for d, m in zip(docs, mask) if m}
        trained |= {d.text for d, m in zip(docs, mask) if not m}
    assert not scored & trained  # before: 3 of the 4 documents scored were DAPT's training documents
    assert scored == held and len(scored) == 4  # one held-out document of each of the 4 sources
    ids = [i for i, _, _ in [(item_id, s, d) for s, item_id, d in task.sourced_documents("domain")]]
    assert len(set(ids)) == 4 and all(i.startswith("domain/") for i in ids)


def test_lineage_follows_merge_and_sft_back_to_the_dapt_run_and_finds_copies(tmp_path):
    from chipadapt.eval.training_overlap import TrainingOverlap
    from chipadapt.manifest import fingerprint_input

    path, docs = corpus(tmp_path)
    dapt = tmp_path / "dapt"
    dapt_manifest(dapt, {"rtl": path}, 0.2)
    manifest = json.loads((dapt / "manifest.json").read_text())
    manifest["inputs"]["data.sources.rtl"]["fingerprint"] = fingerprint_input(path)["fingerprint"]
    (dapt / "manifest.json").write_text(json.dumps(manifest))
    (dapt / "model").mkdir()
    sft = tmp_path / "sft"  # trained on conversations from the DAPT model: its own data is no corpus
    sft.mkdir()
    (sft / "manifest.json").write_text(
        json.dumps(
            {
                "kind": "train",
                "config": {"stage": {"datamodule": {"_target_": "chipadapt.data.sft_datamodule.SFTDataModule"}}},
                "inputs": {"model": {"path": str(dapt / "model")}},
            }
        )
    )
    (sft / "model").mkdir()
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "merge_manifest.json").write_text(json.dumps({"inputs": {"chip": str(sft / "model"), "instruct": "x"}}))

    overlap = TrainingOverlap(merged)
    assert overlap.known and [s.key for s in overlap.sources] == ["data.sources.rtl"]
    copy = tmp_path / "elsewhere" / "copy.jsonl"  # the same file under another name: its fingerprint
    copy.parent.mkdir()
    shutil.copy(path, copy)
    scored = read_source(source_spec({"path": str(copy)}, "s"), "s")
    flags, where = overlap.trained_on(source_spec({"path": str(copy)}, "s"), scored)
    mask = held_out_mask([d["path"] for d in docs], 0.2)
    assert flags == [not m for m in mask] and where == [f"{dapt.resolve()} data.sources.rtl"]
    assert not TrainingOverlap(tmp_path / "no_records").known  # a downloaded model: nothing to say


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A tiny model published as a DAPT run's model/ folder, with that run's record."""
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    root = tmp_path_factory.mktemp("overlap")
    path, docs = corpus(root)
    run = root / "dapt"
    dapt_manifest(run, {"rtl": path}, 0.2)
    shutil.copytree(tiny_llama(root / "cache"), run / "model")
    model = load_causal_lm(run / "model", "float32", "sdpa").eval()
    return model, load_tokenizer(run / "model"), path, docs


def test_perplexity_counts_marks_and_warns_about_documents_the_model_trained_on(trained_model, tmp_path, caplog):
    from chipadapt.eval.tasks.perplexity import PerplexityTask

    model, tokenizer, path, docs = trained_model
    prose = write_jsonl(tmp_path / "prose.jsonl", [{"text": "The river runs past the old mill."}] * 2)
    splits = OmegaConf.create(
        {
            "whole": {"path": str(path)},
            "held": {"path": str(path), "held_out": 0.2},
            "prose": {"path": str(prose), "general": True},
        }
    )
    task = PerplexityTask(splits, 64, None, None, None, None)
    with caplog.at_level(logging.WARNING):
        results = task.run(model, tokenizer)
    trained = int((~held_out_mask([d["path"] for d in docs], 0.2)).sum())
    assert 0 < trained < len(docs)
    assert results["trained_on_overlap"] == {"whole": trained, "held": 0, "prose": 0}
    marked = [i["id"] for i in task.items if i.get("trained_on")]
    assert len(marked) == trained and all(i.startswith("whole/") for i in marked)
    warned = [r.getMessage() for r in caplog.records if "TRAINED ON" in r.getMessage()]
    assert len(warned) == 1 and f"{trained} of the {len(docs)} documents scored in split 'whole'" in warned[0]


def test_split_of_several_sources_holds_each_out_by_its_own_hash(tmp_path):
    from chipadapt.eval.tasks.perplexity import PerplexityTask

    a = write_jsonl(tmp_path / "a.jsonl", [{"text": f"alpha {i}", "id": f"a{i}"} for i in range(10)])
    (tmp_path / "b").mkdir()
    for i in range(6):
        (tmp_path / "b" / f"f{i}.sv").write_text(f"module f{i}; endmodule\n")
    task = PerplexityTask(
        OmegaConf.create({"d": {"path": [str(a), str(tmp_path / "b")], "held_out": 0.3}}), 64, None, None, None, None
    )
    ids = [item_id for _, item_id, _ in task.sourced_documents("d")]
    expect_a = [f"d/a.jsonl/a{i}" for i, m in enumerate(held_out_mask([f"a{i}" for i in range(10)], 0.3)) if m]
    expect_b = [f"d/b/f{i}.sv" for i, m in enumerate(held_out_mask([f"f{i}.sv" for i in range(6)], 0.3)) if m]
    assert ids == expect_a + expect_b
    assert [k for k, _ in task.inputs()] == ["splits.d.path.0", "splits.d.path.1"]


def test_progress_bars_carry_the_task_name(tmp_path, monkeypatch):
    """verilog, qa_rouge and perplexity showed no bar; chip_mcq's was labelled `mcq`."""
    from chipadapt.eval.task_base import TaskBase
    from chipadapt.eval.tasks import mcq, perplexity, verilog

    labels = []
    monkeypatch.setattr(verilog, "generate", lambda *a, progress=None, **k: labels.append(progress) or [""] * len(a[2]))

    class Shape:
        def module_name(self, task):
            return "TopModule"

        def reserved_modules(self, task):
            return frozenset()

    task = verilog.VerilogTask("x", "chat", None, 8, 1, 2, 0.8, 0.95, [1], 5, 1, False, Shape())
    task._candidates(None, None, [{"prompt": "p"}])
    assert labels == ["verilog sample 1/2", "verilog sample 2/2"]

    rows = [{"question": "2+2?", "choices": ["3", "4"], "answer": 1}]
    chip = mcq.MCQTask(
        str(write_jsonl(tmp_path / "q.jsonl", rows)), None, 0, None, "cloze", 2, 64, None, "chipadapt", None
    )
    chip.name = "chip_mcq"  # as the runner names the task it selected
    monkeypatch.setattr(
        mcq, "continuation_logprobs", lambda *a, progress=None, **k: labels.append(progress) or [0.0] * len(a[2])
    )
    try:
        chip.run(None, None)
    except Exception:  # the fake scores need not make a full result: the bar's label is what is checked
        pass
    assert "chip_mcq" in labels and TaskBase().label("mcq") == "mcq"

    bars = []
    real = perplexity.item_bar
    monkeypatch.setattr(perplexity, "item_bar", lambda total, label: bars.append((label, total)) or real(total, label))
    prose = write_jsonl(tmp_path / "p.jsonl", [{"text": "The river runs past the old mill and the square."}] * 2)
    from helpers.models import tiny_llama as tiny

    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    folder = tiny(tmp_path / "cache")
    ppl = perplexity.PerplexityTask(OmegaConf.create({"prose": {"path": str(prose)}}), 32, None, None, None, None)
    ppl.run(load_causal_lm(folder, "float32", "sdpa").eval(), load_tokenizer(folder))
    assert bars == [("perplexity prose", 2)]
