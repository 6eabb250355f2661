"""The perplexity evaluation scores every byte of each document, so two tokenizers' items of one text
carry the same bytes and pair only where they do (a first token left unscored took 1 byte from the base
tokenizer's `bugs/KST-401` and 3 from the augmented one's, which favoured the longer first token); a run
from before does not pair with one after; per-token figures pair split by split."""

import json

import pytest
from conftest import write_jsonl
from omegaconf import OmegaConf
from test_compare_same_items import _not_paired, _ppl_run

from chipadapt.eval.paired_compare import paired_rows

DOCS = [(300 + i, 900 + 3 * i) for i in range(6)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from helpers.models import tiny_llama

    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    folder = tiny_llama(tmp_path_factory.mktemp("tiny"))
    return load_causal_lm(folder, "float32", "sdpa").eval(), load_tokenizer(folder)


def test_every_byte_of_every_document_is_scored(tmp_path, tiny):
    from chipadapt.eval.tasks.perplexity import PerplexityTask

    model, tokenizer = tiny
    texts = ["Bug: the timer wraps at 2^16 and the UART drops a byte.", "é module top; endmodule", "x"]
    corpus = write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "id": f"d{i}"} for i, t in enumerate(texts)])
    task = PerplexityTask(OmegaConf.create({"docs": {"path": str(corpus)}}), 8, None, None, None, None)
    results = task.run(model, tokenizer)
    # Windows of 8 tokens: the first token of each document and each window boundary are scored too.
    assert [i["bytes"] for i in task.items] == [len(t.encode()) for t in texts]
    assert [i["tokens"] for i in task.items] == [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    assert results["first_token"] == "scored" and all(i["first_token"] == "scored" for i in task.items)
    assert "byte_count" not in results  # byte-level BPE counts as before the piece rule: no mark (token_bytes.py)
    assert results["first_token_context"] == tokenizer.bos_token


def _mark(run, scored: bool = True) -> None:
    """Items (and results) as the evaluation now writes them, or as before (no mark)."""
    items = [json.loads(line) for line in (run / "perplexity_items.jsonl").read_text().splitlines()]
    results = json.loads((run / "results.json").read_text())
    if scored:
        items = [{**i, "first_token": "scored"} for i in items]
        results["perplexity"]["first_token"] = "scored"
    write_jsonl(run / "perplexity_items.jsonl", items)
    (run / "results.json").write_text(json.dumps(results))


def test_two_tokenizers_items_whose_bytes_differ_do_not_pair(tmp_path):
    base = _ppl_run(tmp_path / "base", DOCS, 1.0, settings={})
    # Another tokenizer on the same text must give the same bytes: 2 bytes fewer is other text.
    other = _ppl_run(tmp_path / "aug", [(t - 30, b - 2) for t, b in DOCS], 1.1, settings={})
    same = _ppl_run(tmp_path / "aug2", [(t - 30, b) for t, b in DOCS], 1.1, settings={})
    for run in (base, other, same):
        _mark(run)
    rows = paired_rows([("base", base), ("aug", other), ("aug2", same)])
    reason = _not_paired(rows)[("aug", "perplexity")]
    assert "6 of 6 items of aug differ" in reason and "bytes 900 vs 898" in reason
    paired = {r["metric"]: r for r in rows if r["run"] == "aug2" and r["verdict"] != "not paired"}
    assert paired["perplexity.domain.bpb"]["n"] == 6


def test_a_run_from_before_the_first_token_was_scored_does_not_pair_with_one_after(tmp_path):
    before = _ppl_run(tmp_path / "before", DOCS, 1.0, settings={})
    after = _ppl_run(tmp_path / "after", [(t + 1, b + 1) for t, b in DOCS], 1.0, settings={})
    _mark(after)
    reason = _not_paired(paired_rows([("before", before), ("after", after)]))[("after", "perplexity")]
    assert "scored by another rule" in reason and "first_token None vs 'scored'" in reason


def test_per_token_figures_pair_by_split(tmp_path):
    """general.ppl was refused naming a domain document although every general document had the same
    tokens in both runs."""

    def run(path, domain_tokens):
        _ppl_run(path, DOCS, 1.0, settings={})
        items = [json.loads(line) for line in (path / "perplexity_items.jsonl").read_text().splitlines()]
        for i, item in enumerate(items):
            if i < 3:
                item["tokens"] = domain_tokens[i]
                item["scores"]["domain.ppl"]["den"] = domain_tokens[i]
            else:
                item.update(id=f"general/g{i}", split="general")
                item["scores"] = {k.replace("domain", "general"): v for k, v in item["scores"].items()}
        write_jsonl(path / "perplexity_items.jsonl", items)
        _mark(path)
        return path

    base = run(tmp_path / "base", [300, 301, 302])
    aug = run(tmp_path / "aug", [280, 281, 282])
    rows = paired_rows([("base", base), ("aug", aug)])
    refused = _not_paired(rows)
    assert "'domain/d0' is 300 tokens" in refused[("aug", "perplexity.domain.ppl")]
    assert ("aug", "perplexity.general.ppl") not in refused
    assert {r["metric"] for r in rows if r["verdict"] != "not paired"} == {
        "perplexity.domain.bpb",
        "perplexity.general.ppl",
        "perplexity.general.bpb",
    }


def test_a_group_choice_an_experiment_made_labels_its_run_beside_one_set_on_the_command_line(tmp_path):
    """Two DAPT runs, `tokenizer=base` given and the experiment's augmented_small taken: the second was
    labelled by its folder (`dapt_aug`)."""
    from chipadapt.eval.compare_plots import short_labels
    from chipadapt.eval.compare_runs import Run, label_runs

    def run(name, overrides, tokenizer, model="smollm2_135m_instruct"):
        names = {"tokenizer": tokenizer, "model": model}
        return Run(tmp_path / name, "train", "completed", overrides, {}, extra={"group_names": names})

    runs = [run("dapt_base", {"tokenizer": "base"}, "base"), run("dapt_aug", {}, "augmented_small")]
    label_runs(runs, None)
    assert [r.label for r in runs] == ["tokenizer=base", "tokenizer=augmented_small"]
    assert short_labels(runs) == ["tokenizer=base", "tokenizer=augmented_small"]
    # A group whose recorded name is not the option's (conf/model/smollm2_135m.yaml names itself
    # smollm2_135m_instruct): no name to trust, the folder as before.
    runs = [run("a", {"model": "smollm2_135m"}, "base"), run("b", {}, "base", model="tiny")]
    label_runs(runs, None)
    assert [r.label for r in runs] == ["model=smollm2_135m", "b"]
