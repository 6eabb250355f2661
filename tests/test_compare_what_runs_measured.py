"""compare.py pairs only what each run says it measured: the tasks its results.json names (a rerun of
evaluate.py with fewer tasks keeps the others there, with their own recorded settings), each task only
with the same settings that change what is measured, and against the first run named that has
per-item files (a training run named first has none)."""

import hashlib
import json
import logging
import re
from pathlib import Path

import pytest
from conftest import CONF, write_jsonl
from helpers import eval_tasks
from omegaconf import OmegaConf, open_dict

from chipadapt.eval import run as eval_run

MCQ = {"_target_": "chipadapt.eval.tasks.mcq.MCQTask", "path": "mmlu.jsonl", "num_fewshot": 0, "limit": None}
MCQ |= {"style": "letters", "batch_size": 8, "max_length": 2048, "preset": "chipadapt"}
IFEVAL = {"_target_": "chipadapt.eval.tasks.ifeval.IFEvalTask", "path": "input_data.jsonl", "limit": None}
IFEVAL |= {"max_new_tokens": 64, "preset": "chipadapt", "chat": True, "batch_size": 64}


def _run(path: Path, right: dict[str, list[bool]], settings: dict | None = None, model: str = "m", kind="evaluate"):
    """An evaluation's folder: per task, items q0.. right or wrong, results naming the tasks, and a
    manifest with `settings` (task -> config) and the model's fingerprint `model`."""
    from chipadapt.eval.items import summarize

    path.mkdir(parents=True)
    results = {}
    for task, marks in right.items():
        items = [{"id": f"q{i}", "reference": 0, "scores": {"acc": r}} for i, r in enumerate(marks)]
        write_jsonl(path / f"{task}_items.jsonl", items)
        results[task] = summarize(items)
    (path / "results.json").write_text(json.dumps(results))
    inputs = {"model": {"path": f"/models/{model}", "fingerprint": model * 8, "files": 3}}
    for task, config in (settings or {}).items():
        fingerprint = hashlib.sha256(config["path"].encode()).hexdigest()
        inputs[f"eval.{task}.path"] = {"path": f"/data/{config['path']}", "fingerprint": fingerprint}
    config = {"eval": settings or {}, "model": {"dtype": "float32", "attn_implementation": "sdpa"}}
    manifest = {"kind": kind, "status": "completed", "results": results, "config": config, "inputs": inputs}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


MARKS_A = [True, False, True, False, True, True, False, True, False, False]
MARKS_B = [True, True, True, False, True, True, True, True, False, True]


def _rows(runs):
    from chipadapt.eval.paired_compare import paired_rows

    return {(r["run"], r["metric"]): r for r in paired_rows(runs)}


def test_per_item_files_the_results_do_not_name_are_not_paired(tmp_path, caplog):
    """A rerun by an earlier version with eval=[mcq] left chip_mcq's items of another evaluation beside
    a results.json naming mcq only: pairing them would credit that run with figures it never reports."""
    base = _run(tmp_path / "base", {"mcq": MARKS_A, "chip_mcq": MARKS_A})
    rerun = _run(tmp_path / "rerun", {"mcq": MARKS_B, "chip_mcq": MARKS_B})
    results = json.loads((rerun / "results.json").read_text())
    (rerun / "results.json").write_text(json.dumps({"mcq": results["mcq"]}))

    caplog.set_level(logging.WARNING)
    rows = _rows([("base", base), ("rerun", rerun)])
    assert rows[("rerun", "mcq.acc")]["n"] == 10
    stray = rows[("rerun", "chip_mcq")]
    assert stray["verdict"] == "not paired" and "not in that run's results.json" in stray["reason"]
    assert stray["reason"].startswith("rerun's per-item file")
    assert any("chip_mcq of rerun not paired" in r.getMessage() for r in caplog.records)
    # And the other way round: the baseline's own stray file.
    rows = _rows([("rerun", rerun), ("base", base)])
    assert rows[("base", "chip_mcq")]["reason"].startswith("rerun's per-item file")


def test_runs_measured_with_other_settings_are_not_paired_and_say_which(tmp_path):
    """lm-eval's preset 2-shot against chipadapt's 0-shot, IFEval's 32 against 64 new tokens: another
    model measured another way, so the difference would mix the two."""
    lm_eval = {"mcq": {**MCQ, "preset": "lm_eval", "num_fewshot": 2}, "ifeval": {**IFEVAL, "max_new_tokens": 32}}
    ours = {"mcq": MCQ, "ifeval": IFEVAL}
    base = _run(tmp_path / "lmeval", {"mcq": MARKS_A, "ifeval": MARKS_A}, lm_eval, model="base")
    dapt = _run(tmp_path / "dapt", {"mcq": MARKS_B, "ifeval": MARKS_B}, ours, model="dapt")
    rows = _rows([("lmeval", base), ("dapt", dapt)])
    assert {r["verdict"] for r in rows.values()} == {"not paired"}
    mcq, ifeval = rows[("dapt", "mcq")]["reason"], rows[("dapt", "ifeval")]["reason"]
    assert "num_fewshot 2 vs 0" in mcq and "preset 'lm_eval' vs 'chipadapt'" in mcq
    assert "other settings" in mcq and "max_new_tokens 32 vs 64" in ifeval


def test_settings_that_never_change_a_score_pair_and_selections_pair_on_shared_items_with_a_note(tmp_path):
    base = _run(tmp_path / "base", {"mcq": MARKS_A}, {"mcq": MCQ}, model="base")
    # Another batch size, and the same data under another path (the same fingerprint): nothing to say.
    moved = _run(tmp_path / "moved", {"mcq": MARKS_B}, {"mcq": {**MCQ, "batch_size": 2}}, model="dapt")
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["inputs"]["eval.mcq.path"]["path"] = "/elsewhere/mmlu.jsonl"
    (moved / "manifest.json").write_text(json.dumps(manifest))
    # The first 8 questions only: paired on those, and said.
    fewer = _run(tmp_path / "fewer", {"mcq": MARKS_B[:8]}, {"mcq": {**MCQ, "limit": 8}}, model="dapt")
    # Other data at the same path: another fingerprint.
    other = _run(tmp_path / "other", {"mcq": MARKS_B}, {"mcq": {**MCQ, "path": "edited.jsonl"}}, model="dapt")
    rows = _rows([("base", base), ("moved", moved), ("fewer", fewer), ("other", other)])
    assert rows[("moved", "mcq.acc")]["n"] == 10 and rows[("moved", "mcq.acc")]["reason"] == ""
    assert rows[("fewer", "mcq.acc")]["n"] == 8
    assert re.search(
        r"other items selected \(limit None vs 8\): paired on the items both scored",
        rows[("fewer", "mcq.acc")]["reason"],
    )
    assert rows[("other", "mcq")]["verdict"] == "not paired"
    assert re.search(r"path /data/mmlu.jsonl \(\w+\) vs /data/edited.jsonl", rows[("other", "mcq")]["reason"])


def test_the_same_model_under_other_settings_pairs_with_a_warning_naming_them(tmp_path, caplog):
    """One model with and without its chat template: the setting is what the comparison is about."""
    from chipadapt.eval.paired_compare import write_paired

    chat = _run(tmp_path / "chat", {"ifeval": MARKS_A}, {"ifeval": IFEVAL}, model="dapt")
    raw = _run(tmp_path / "raw", {"ifeval": MARKS_B}, {"ifeval": {**IFEVAL, "chat": False}}, model="dapt")
    out = tmp_path / "cmp"
    out.mkdir()
    caplog.set_level(logging.WARNING)
    rows = write_paired([("chat", chat), ("raw", raw)], None, out)
    assert rows[0]["verdict"] != "not paired" and rows[0]["n"] == 10
    assert "the same model evaluated with other settings (chat True vs False)" in rows[0]["reason"]
    assert any("chat True vs False" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "ifeval of raw, paired with chat, but: the same model" in (out / "compare_paired.md").read_text()


def test_a_training_run_named_first_leaves_the_first_evaluation_as_the_baseline(tmp_path, caplog):
    train = tmp_path / "train"
    train.mkdir()
    (train / "manifest.json").write_text(json.dumps({"kind": "train", "status": "completed", "metrics": {}}))
    dapt = _run(tmp_path / "dapt", {"mcq": MARKS_B})
    base = _run(tmp_path / "base", {"mcq": MARKS_A})
    caplog.set_level(logging.WARNING)
    rows = _rows([("train", train), ("dapt", dapt), ("base", base)])
    assert list(rows) == [("base", "mcq.acc")] and rows[("base", "mcq.acc")]["against"] == "dapt"
    said = [r.getMessage() for r in caplog.records if "paired against" in r.getMessage()]
    assert said == ["compare: paired against dapt, the first run named with per-item files (train has none)"]


@pytest.fixture
def evaluate(tmp_path, monkeypatch):
    """evaluate.py's job in-process on fake model folders (the tasks count their runs; no model loads)."""
    from hydra import compose, initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)
    from chipadapt.models import hf_folder

    eval_tasks.RUNS.clear()

    class Loaded:
        model = tokenizer = None

    monkeypatch.setattr(eval_run, "load_for_inference", lambda *args: Loaded())
    monkeypatch.setattr(hf_folder, "resolve_model_folder", lambda model: Path(model.path))

    def job(model: Path, out: Path, tasks: dict[str, dict]):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("evaluate", overrides=[f"model.path={model}", f"paths.output_dir={out}"])
        with open_dict(cfg):
            target = "helpers.eval_tasks.CountingTask"
            cfg.eval = OmegaConf.create(
                {
                    name: {"_target_": target, "name": name, "needs_model": True, **extra}
                    for name, extra in tasks.items()
                }
            )
        return eval_run.run(cfg)

    return job


def test_a_rerun_with_fewer_tasks_keeps_the_others_in_results_json_with_their_own_settings(tmp_path, evaluate):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')  # what evaluate checks before loading
    (model / "model.safetensors").write_bytes(b"weights")
    run = tmp_path / "run"
    evaluate(model, run, {"perplexity": {"limit": 4}, "mcq": {}, "ifeval": {}})
    assert eval_tasks.RUNS == ["perplexity", "mcq", "ifeval"]
    results = evaluate(model, run, {"mcq": {"limit": 3}})
    assert eval_tasks.RUNS == ["perplexity", "mcq", "ifeval", "mcq"]  # only mcq runs again
    written = json.loads((run / "results.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(written) == set(manifest["results"]) == set(results) == {"mcq", "perplexity", "ifeval"}
    assert written["mcq"]["acc_n"] == 3 and written["perplexity"]["acc_n"] == 4
    # Each task with the settings it was measured with: this run's mcq, the earlier run's perplexity.
    from chipadapt.eval.evaluated_tasks import task_settings

    assert task_settings(run, "mcq")["limit"] == 3 and task_settings(run, "perplexity")["limit"] == 4


def test_earlier_records_without_settings_or_of_another_model_stay_out_of_results_json(tmp_path, evaluate):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')  # what evaluate checks before loading
    (model / "model.safetensors").write_bytes(b"weights")
    run = tmp_path / "run"
    evaluate(model, run, {"perplexity": {}, "ifeval": {}, "mcq": {}})
    record = run / "tasks" / "perplexity.json"  # as an earlier version wrote it
    old = json.loads(record.read_text())
    record.write_text(json.dumps({k: old[k] for k in ("key", "items", "results")}))
    other = run / "tasks" / "ifeval.json"  # another model's (a folder whose manifest was replaced)
    another = {"model": "another model's identity", "model_fingerprint": "another model's content"}
    other.write_text(json.dumps({**json.loads(other.read_text()), **another}))
    evaluate(model, run, {"mcq": {}})
    assert set(json.loads((run / "results.json").read_text())) == {"mcq"}


def test_a_split_of_several_paths_is_compared_path_by_path_and_a_path_recorded_on_one_side_only_differs():
    """Lists of data paths (a perplexity split pooling sources) are flattened as the manifest records each
    file read (`path.0`, ...), and a file whose content only one run recorded is compared by path."""
    from chipadapt.eval.same_items import RecordedFile, settings_differ

    pooled = {"splits": {"domain": {"path": ["/d/docs", "/d/bugs"], "held_out": 0.15}}}
    other = {"splits": {"domain": {"path": ["/d/docs", "/d/rtl"], "held_out": 0.15}}}
    assert [key for key, *_ in settings_differ(pooled, other)] == ["splits.domain.path.1"]
    assert settings_differ(pooled, pooled) == []
    recorded = {"splits": {"domain": {"path": RecordedFile("f" * 16, "/d/docs.jsonl")}}}
    assert settings_differ(recorded, {"splits": {"domain": {"path": "/d/docs.jsonl"}}}) == []
    differ = settings_differ(recorded, {"splits": {"domain": {"path": "/d/all_docs"}}})
    assert [key for key, *_ in differ] == ["splits.domain.path"]


def test_a_metric_no_item_of_which_both_runs_scored_is_said_not_paired(tmp_path):
    """Item ids of another form (a split pooling sources names them domain/<source>/<doc>) leave no item
    in common: the row says so rather than the metric vanishing from the paired table."""
    base = _run(tmp_path / "base", {"mcq": MARKS_A})
    other = _run(tmp_path / "other", {"mcq": MARKS_B})
    items = [json.loads(line) for line in (other / "mcq_items.jsonl").read_text().splitlines()]
    write_jsonl(other / "mcq_items.jsonl", [{**item, "id": f"x/{item['id']}"} for item in items])
    rows = _rows([("base", base), ("other", other)])
    row = rows[("other", "mcq.acc")]
    assert row["verdict"] == "not paired" and "no item scored in both runs" in row["reason"]


def test_a_task_only_one_run_measured_is_a_not_paired_row_saying_which_has_none(tmp_path):
    """compare_paired.md left out, without a word, the tasks only one of the two runs measured."""
    base = _run(tmp_path / "base", {"mcq": MARKS_A, "chip_mcq": MARKS_A}, {"mcq": MCQ, "chip_mcq": MCQ})
    other = _run(tmp_path / "other", {"mcq": MARKS_B, "ifeval": MARKS_B}, {"mcq": MCQ, "ifeval": IFEVAL})
    rows = _rows([("base", base), ("other", other)])
    assert rows[("other", "chip_mcq")]["verdict"] == "not paired"
    assert rows[("other", "chip_mcq")]["reason"].startswith("the other has none")
    assert rows[("other", "ifeval")]["reason"].startswith("the baseline has none")
    assert rows[("other", "mcq.acc")]["verdict"] != "not paired"
