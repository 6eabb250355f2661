"""What an lm-eval user relies on in eval=mcq: a score per subject and per category with its interval,
subjects picked by name (and part of the task's key), each item's prompt, and the lm-eval reference
keeping questions MMLU repeats word for word apart."""

import json
import sys
import types
from pathlib import Path

import pytest
from conftest import ROOT, write_jsonl
from omegaconf import OmegaConf
from test_eval_inputs_trial import mcq_task

from chipadapt.errors import ChipadaptError

# Three subjects: two of MMLU's (stem, humanities) and one more; the same question text in two subjects.
ROWS = [
    *({"subject": "anatomy", "question": f"Bone {i}?", "choices": ["a", "b", "c", "d"], "answer": 0} for i in range(6)),
    *(
        {"subject": "philosophy", "question": f"Idea {i}?", "choices": ["a", "b", "c", "d"], "answer": 1}
        for i in range(4)
    ),
    {"subject": "virology", "question": "Which of the following is true?", "choices": ["a", "b"], "answer": 0},
    {"subject": "virology", "question": "Which of the following is true?", "choices": ["c", "d"], "answer": 1},
]


def run_picking_first(task, monkeypatch):
    """Run `task` with a scorer that prefers the first choice: anatomy all right, philosophy all wrong."""
    import chipadapt.eval.tasks.mcq as mcq

    def scores(model, tokenizer, pairs, *args, **kwargs):
        return [0.0 if continuation == " A" else -1.0 for _, continuation in pairs]

    monkeypatch.setattr(mcq, "continuation_logprobs", scores)
    monkeypatch.setattr(mcq, "fit_to_context", lambda model, max_length, name: max_length)
    return task.run(None, None)


def test_results_score_each_subject_and_mmlu_category_with_interval_and_n(tmp_path, monkeypatch):
    results = run_picking_first(mcq_task(write_jsonl(tmp_path / "q.jsonl", ROWS)), monkeypatch)
    subjects = results["by_subject"]
    assert list(subjects) == ["anatomy", "philosophy", "virology"]
    assert subjects["anatomy"]["acc"] == 1.0 and subjects["anatomy"]["acc_n"] == 6
    assert subjects["anatomy"]["acc_ci_method"] == "clopper-pearson" and subjects["anatomy"]["acc_ci"][0] > 0.5
    assert subjects["philosophy"]["acc"] == 0.0 and subjects["philosophy"]["acc_ci"] == [
        0.0,
        pytest.approx(0.6024, abs=1e-4),
    ]
    assert subjects["virology"]["acc_n"] == 2 and subjects["virology"]["acc"] == 0.5  # a repeated question: 2 items
    categories = results["by_category"]  # MMLU's own map: anatomy stem, philosophy humanities, virology other
    assert set(categories) == {"stem", "humanities", "other"} and categories["stem"]["subjects"] == 1
    assert categories["humanities"]["acc_n"] == 4 and categories["other"]["acc_norm_n"] == 2
    # The overall figures and the subject count readers take are where they were.
    assert results["acc"] == pytest.approx(7 / 12) and results["subjects"] == 3 and results["acc_n"] == 12


def test_a_category_given_in_the_records_groups_micro_averaged(tmp_path, monkeypatch):
    rows = [
        {**r, "subject": f"chip_{r['subject']}", "category": "design" if r["subject"] != "philosophy" else "flow"}
        for r in ROWS
    ]
    results = run_picking_first(mcq_task(write_jsonl(tmp_path / "q.jsonl", rows)), monkeypatch)
    design = results["by_category"]["design"]
    # Micro average, as lm-eval's weight_by_size groups: 7 right of 8 items, not the mean of 1.0 and 0.5.
    assert design["acc"] == pytest.approx(7 / 8) and design["acc_n"] == 8 and design["subjects"] == 2


def test_no_category_where_subjects_are_not_mmlus_and_none_is_given(tmp_path, monkeypatch):
    rows = [{**r, "subject": "digital"} for r in ROWS[:6]]
    results = run_picking_first(mcq_task(write_jsonl(tmp_path / "q.jsonl", rows)), monkeypatch)
    assert "by_category" not in results and results["by_subject"]["digital"]["acc_n"] == 6


def test_results_rows_name_the_subject_metrics_and_readers_keep_the_overall_ones(tmp_path, monkeypatch):
    from chipadapt.eval.run import metric_rows
    from chipadapt.run_metrics import evaluation_metrics, evaluation_uncertainty

    results = {"mcq": run_picking_first(mcq_task(write_jsonl(tmp_path / "q.jsonl", ROWS)), monkeypatch)}
    json.dumps(results, allow_nan=False)  # results.json is strict JSON
    metrics = evaluation_metrics(results)
    assert metrics["mcq.acc"] == pytest.approx(7 / 12) and metrics["mcq.by_subject.anatomy.acc"] == 1.0
    assert "mcq.by_category.stem.subjects" not in metrics  # a count, not a metric
    assert evaluation_uncertainty(results)["mcq.by_subject.philosophy.acc"]["n"] == 4
    rows = {name: n for name, _, _, _, _, n in metric_rows(results["mcq"])}
    assert rows["by_category.humanities.acc"] == 4


def test_subjects_pick_rows_by_name_before_max_per_subject_and_limit(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "q.jsonl", ROWS)
    task = mcq_task(path, subjects=["virology", "anatomy"], max_per_subject=3, limit=4)
    assert [r["subject"] for r in task.rows] == ["anatomy"] * 3 + ["virology"]  # file order kept
    results = run_picking_first(task, monkeypatch)
    assert results["selected_subjects"] == ["virology", "anatomy"] and list(results["by_subject"]) == [
        "anatomy",
        "virology",
    ]
    assert "selected_subjects" not in run_picking_first(mcq_task(path), monkeypatch)
    # One name given as text (eval.mcq.subjects=anatomy) is a list of one.
    assert {r["subject"] for r in mcq_task(path, subjects="anatomy").rows} == {"anatomy"}


def test_an_unknown_subject_is_one_error_naming_the_nearest(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", ROWS)
    with pytest.raises(ChipadaptError) as err:
        mcq_task(path, subjects=["anatomy", "virolgy", "zzzz"])
    message = str(err.value)
    assert "\n" not in message and message.startswith("eval.mcq.subjects: not a subject of")
    assert "'virolgy' (nearest: virology)" in message and "'zzzz' (nearest: none)" in message
    assert "it has 3 subjects" in message
    with pytest.raises(ChipadaptError, match=r"eval.mcq.subjects: \[\] is not a list of subject names"):
        mcq_task(path, subjects=[])
    with pytest.raises(ChipadaptError, match=r"eval.mcq.subjects: .* names no subject"):
        mcq_task(
            write_jsonl(tmp_path / "plain.jsonl", [{k: v for k, v in r.items() if k != "subject"} for r in ROWS]),
            subjects=["a"],
        )


def test_subjects_are_a_setting_of_the_shipped_tasks_and_change_the_tasks_key(tmp_path):
    from chipadapt.eval.finished_tasks import FinishedTasks

    for name in ("mcq", "chip_mcq"):
        shipped = OmegaConf.load(ROOT / "conf" / "eval" / f"{name}.yaml")
        assert "subjects" in shipped and shipped.subjects is None
    records = FinishedTasks(tmp_path, {"dtype": "float32", "attn": "sdpa", "device": "cpu"})
    every = OmegaConf.create({"path": "q.jsonl", "subjects": None})
    some = OmegaConf.create({"path": "q.jsonl", "subjects": ["anatomy"]})
    other = OmegaConf.create({"path": "q.jsonl", "subjects": ["virology"]})
    keys = {records.key(cfg, None) for cfg in (every, some, other)}
    assert len(keys) == 3  # a rerun with other subjects is not taken for the finished one


def test_other_subjects_are_a_reported_change_and_pair_on_the_shared_questions(tmp_path):
    from chipadapt.eval.finished_tasks import FinishedTasks
    from chipadapt.eval.same_items import same_settings

    one, two = ["anatomy"], ["anatomy", "virology"]
    notes = same_settings("mcq", "A", "B", {"path": "q.jsonl", "subjects": one}, {"path": "q.jsonl", "subjects": two})
    assert notes == [
        "other items selected (subjects ['anatomy'] vs ['anatomy', 'virology']): paired on the items both scored"
    ]
    # A rerun that adds a subject (the first ones the same) is another measurement, said and set aside.
    records = FinishedTasks(tmp_path, {"dtype": "float32", "attn": "sdpa", "device": "cpu"})
    records.folder.mkdir()
    (records.folder / "mcq.json").write_text(
        json.dumps({"key": "k", "items": False, "results": {}, "settings": {"path": "q.jsonl", "subjects": one}})
    )
    measured = records.measured_with(OmegaConf.create({"path": "q.jsonl", "subjects": two}), None, {})
    assert records.changed_settings("mcq", measured) == ["subjects ['anatomy'] -> ['anatomy', 'virology']"]


def test_each_item_keeps_its_prompt(tmp_path, monkeypatch):
    task = mcq_task(write_jsonl(tmp_path / "q.jsonl", ROWS))
    run_picking_first(task, monkeypatch)
    assert task.items[0]["context"] == "Question: Bone 0?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    lm_eval = mcq_task(write_jsonl(tmp_path / "q.jsonl", ROWS), preset="lm_eval")
    run_picking_first(lm_eval, monkeypatch)
    assert lm_eval.items[6]["context"].startswith(
        "The following are multiple choice questions (with answers) about philosophy.\n\nIdea 0?\n"
    )


def test_lm_eval_reference_keeps_repeated_questions_apart(tmp_path, monkeypatch):
    """MMLU repeats question texts word for word (within and across subjects): lm-eval's predictions are
    keyed by the row's position, not merged by text."""
    from chipadapt.eval import lm_eval_reference

    rows = [ROWS[-2], ROWS[0], ROWS[-1], {**ROWS[-1], "subject": "anatomy"}]

    def simple_evaluate(model, tasks, **kwargs):
        # lm-eval numbers each task's documents in its file's order; the prediction is the last choice of
        # a document's own file line (its answer differs between the two repeats).
        samples = {}
        for name in tasks:
            subject = name.removeprefix("local_mmlu_")
            docs = [
                json.loads(line) for line in (tmp_path / "tasks" / f"{subject}_test.jsonl").read_text().splitlines()
            ]
            samples[name] = [
                {
                    "doc_id": i,
                    "doc": doc,
                    "filtered_resps": [
                        (0.0 if c == doc["answer"] else -1.0, False) for c in range(len(doc["choices"]))
                    ],
                }
                for i, doc in enumerate(docs)
            ]
        return {"samples": samples}

    monkeypatch.setitem(
        sys.modules,
        "lm_eval",
        types.SimpleNamespace(simple_evaluate=simple_evaluate, __file__=str(tmp_path / "lm_eval" / "__init__.py")),
    )
    monkeypatch.setitem(sys.modules, "lm_eval.tasks", types.SimpleNamespace(TaskManager=lambda **kwargs: None))
    installed = tmp_path / "lm_eval" / "tasks" / "mmlu" / "default"
    installed.mkdir(parents=True)
    for subject in ("anatomy", "virology"):
        (installed / f"mmlu_{subject}.yaml").write_text(f"include: _default_template_yaml\ntask: mmlu_{subject}\n")
    predictions = lm_eval_reference.run_mmlu(None, rows, [], tmp_path / "tasks", "letters", 0)
    assert predictions == {0: 0, 1: 0, 2: 1, 3: 1}  # four rows, three of one text: four predictions
    assert all(Path(tmp_path / "tasks" / f"local_mmlu_{s}.yaml").is_file() for s in ("anatomy", "virology"))


def test_mmlu_categories_are_lm_evals_own():
    lm_eval = pytest.importorskip("lm_eval")
    import yaml

    from chipadapt.eval.mcq_subjects import MMLU_CATEGORIES

    installed = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    theirs = {}
    for path in installed.glob("mmlu_*.yaml"):
        config = yaml.safe_load(path.read_text())
        if "dataset_name" in config:  # a subject's task, not a group's
            theirs[config["dataset_name"]] = config["tag"].removeprefix("mmlu_").removesuffix("_tasks")
    assert theirs == MMLU_CATEGORIES


def test_compare_leaves_the_per_subject_figures_out_of_its_default_table_but_takes_them_by_name(tmp_path):
    from types import SimpleNamespace

    from chipadapt.eval.compare import chosen_metrics

    metrics = {"mcq.acc": 0.5, "mcq.by_subject.anatomy.acc": 0.4, "mcq.by_category.stem.acc": 0.3}
    runs = [SimpleNamespace(metrics=metrics, folder=tmp_path)]
    assert chosen_metrics(runs, None) == ["mcq.acc"]
    assert chosen_metrics(runs, ["mcq.by_subject.anatomy.acc"]) == ["mcq.by_subject.anatomy.acc"]
