"""The report names the general model the reproduction ran (the config's `model.name`, and its size from
the weights): a model=tiny smoke run's REPORT.md said "General model: SmolLM2-135M-Instruct", labelled
its rows "general (SmolLM2-135M-Instruct)" and explained results by "a 135M model"."""

import torch
from safetensors.torch import save_file
from test_reproduce import by_name, compose_reproduce

from chipadapt.reproduce.report.general_model import parameter_count, size_text, sized_model
from chipadapt.reproduce.report.verdicts import retrieval_rows
from chipadapt.reproduce.steps import load_steps


def test_the_general_models_label_comes_from_the_config():
    assert by_name(load_steps(compose_reproduce(["variant=smoke"])))["eval_base"].label == "general (tiny)"


def test_its_size_is_read_from_the_weights(tmp_path):
    save_file({"a": torch.zeros(64, 512), "b": torch.zeros(3)}, str(tmp_path / "model.safetensors"))
    assert parameter_count(tmp_path) == 64 * 512 + 3 and size_text(parameter_count(tmp_path)) == "0.03M"
    assert size_text(134_515_008) == "135M" and parameter_count(tmp_path / "none") is None


def test_no_sentence_says_135m_of_another_model():
    facts = {"minilm": {"hit@8": 0.5}, "finetuned": {"hit@8": 0.5}, "hit8_paired": None}
    why = retrieval_rows(facts, "0.1M")[0][-1]
    assert "a 0.1M model" in why and "135M" not in why
    assert sized_model(None) == "a model this small"


def test_the_provenance_table_names_a_sweeps_commit_from_its_jobs(tmp_path):
    """merge_chipalign and screen_interp (merge.py -m) showed commit "–": their manifests are per job."""
    import json

    from chipadapt.reproduce.report.build import step_commits
    from chipadapt.reproduce.report.context import Context
    from chipadapt.reproduce.steps import Step

    for job, commit in (("0", "a" * 40), ("1", "a" * 40)):
        (tmp_path / "sweep" / job).mkdir(parents=True)
        (tmp_path / "sweep" / job / "manifest.json").write_text(json.dumps({"git": {"commit": commit}}))
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "manifest.json").write_text(json.dumps({"git": {"commit": "b" * 40}}))
    steps = {n: Step(n, "merge.py", (), "merge", multirun=n == "sweep") for n in ("sweep", "one")}
    ctx = Context(out=tmp_path, report_dir=tmp_path, steps=steps, ledger={}, base_model=tmp_path, shared_data=tmp_path)
    assert step_commits(ctx, "sweep") == "a" * 10 and step_commits(ctx, "one") == "b" * 10
