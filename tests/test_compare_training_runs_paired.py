"""compare.py pairs two training runs on their final validation, document by document, as it pairs two
evaluations: a DAPT search's trials validate the same held-out documents, yet compare.py said "no
per-item files shared by two runs' results; no paired comparison". Each training run now writes
`train.val_items.jsonl` (stages/validation_items.py); runs whose validation read other text are not
paired. And the runs of one comparison that trained other numbers of steps (a trial whose blend weights
shrank its epoch stopped at 2 where trainer.max_steps=3) are shown with their steps and a note.
That a training run writes the file: tests/test_validation_intervals.py (its one tiny training)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_compare_validation_text import compare_table

from chipadapt.eval.items import VALIDATION_TASK, estimate, items_file
from chipadapt.eval.paired_compare import interval_text, paired_rows
from chipadapt.modules.val_figures import split_values
from chipadapt.stages.validation_items import validation_records, write_validation_items


def table(nll: list[float], tokens=(50, 60, 70, 80), nbytes=(200, 230, 260, 300)) -> np.ndarray:
    """An item table [item, nll, tokens, bytes] of four documents."""
    return np.array([[i, n, t, b] for i, (n, t, b) in enumerate(zip(nll, tokens, nbytes))], dtype=np.float64)


def test_the_records_give_back_the_figures_validation_logged():
    tables = {"domain": table([300.0, 350.0, 420.0, 500.0]), "general": table([310.0, 340.0, 400.0, 520.0])}
    records = validation_records(tables)
    assert [r["id"] for r in records[:2]] == ["domain/0", "domain/1"] and records[4]["split"] == "general"
    for split, t in tables.items():
        logged = split_values(t)
        for name in ("ppl", "loss", "bpb"):
            values = [r["scores"][f"val/{split}/{name}"] for r in records if r["split"] == split]
            assert estimate(values).value == pytest.approx(logged[name])
    # a diverged document is left unscored (strict JSON holds no NaN), its neighbours kept
    diverged = validation_records({"domain": table([300.0, math.nan, 420.0, 500.0])})
    assert diverged[1]["scores"] == {} and "val/domain/bpb" in diverged[0]["scores"]


def train_folder(path: Path, nll: list[float], steps: int = 3, fingerprint: str = "f1") -> Path:
    """A finished training run's folder: its manifest and its final validation's items."""
    path.mkdir(parents=True)
    t = table(nll)
    figures = {split: split_values(t) for split in ("domain", "general")}
    record = {"bytes": int(t[:, 3].sum()), "documents": 4, "cut_token_bytes": 0, "documents_fingerprint": fingerprint}
    manifest = {
        "kind": "train",
        "status": "completed",
        "overrides": [f"optim.lr={nll[0]}"],
        "config": {"data": {"seq_len": 64}, "trainer": {}},
        "data": {"val_text": {"domain": record, "general": {**record, "documents_fingerprint": "g1"}}},
        "plan": {"steps": 3, "tokens": 3 * 4096},
        "metrics": {"after": figures, "global_step": steps},
        "results": {},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    write_validation_items(path, {"domain": t, "general": t})
    return path


def test_two_training_runs_pair_document_by_document(tmp_path):
    a = train_folder(tmp_path / "0", [300.0, 350.0, 420.0, 500.0])
    b = train_folder(tmp_path / "1", [290.0, 345.0, 410.0, 480.0])
    rows = paired_rows([("best", a), ("runner-up", b)])
    bpb = next(r for r in rows if r["metric"] == "val/domain/bpb")
    assert bpb["verdict"] == "within noise" and bpb["n"] == 4 and bpb["difference"] < 0
    assert bpb["test"] == "paired-permutation-exact" and bpb["p"] == pytest.approx(0.125)
    assert "(interval n/a: n=4, too few)" in interval_text(bpb["difference"], bpb["ci95_lo"], bpb["ci95_hi"], 4)
    # the metrics named as compare.py names a training run's: only those asked for are paired
    only = paired_rows([("best", a), ("runner-up", b)], ["val/general/bpb"])
    assert [r["metric"] for r in only] == ["val/general/bpb"]


def test_training_runs_that_validated_on_other_text_are_not_paired(tmp_path, caplog):
    a = train_folder(tmp_path / "0", [300.0, 350.0, 420.0, 500.0])
    b = train_folder(tmp_path / "1", [290.0, 345.0, 410.0, 480.0], fingerprint="other")
    [row] = paired_rows([("a", a), ("b", b)])
    assert row["verdict"] == "not paired" and "validation text differs: domain reads other documents" in row["reason"]


def test_the_validation_file_is_no_evaluation_task_and_stays_paired_beside_results(tmp_path):
    """A training stage with results of its own (annotate's) still pairs on its validation file."""
    a = train_folder(tmp_path / "0", [300.0, 350.0, 420.0, 500.0])
    b = train_folder(tmp_path / "1", [290.0, 345.0, 410.0, 480.0])
    for folder in (a, b):
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**manifest, "results": {"annotate": {"rows": 3}}}))
    assert items_file(a, VALIDATION_TASK).name == "train.val_items.jsonl"
    assert any(r["metric"] == "val/domain/bpb" for r in paired_rows([("a", a), ("b", b)]))


def test_runs_that_trained_other_numbers_of_steps_are_shown_with_their_steps(tmp_path):
    a = train_folder(tmp_path / "0", [300.0, 350.0, 420.0, 500.0], steps=2)
    b = train_folder(tmp_path / "1", [290.0, 345.0, 410.0, 480.0], steps=3)
    lines, rows = compare_table(tmp_path, [a, b])
    assert lines[0].endswith("| trained |")
    assert any(line.endswith("| 2 steps, 8,192 tokens |") for line in lines)
    assert any("trained for different budgets (2 to 3 steps" in line for line in lines)
    assert sorted(r["trained_steps"] for r in rows) == ["2", "3"]  # sorted by the x axis
    same, _ = compare_table(tmp_path / "same", [tmp_path / "0", train_folder(tmp_path / "2", [1.0, 2.0, 3.0, 4.0], 2)])
    assert "trained" not in same[0] and not any("budgets" in line for line in same)


def test_a_training_run_named_before_evaluations_leaves_them_paired_with_each_other(tmp_path, caplog):
    """Its validation file is no evaluation's task: the first evaluation stays the baseline."""
    from test_compare_what_runs_measured import MARKS_A, MARKS_B, _run

    train = train_folder(tmp_path / "train", [300.0, 350.0, 420.0, 500.0])
    dapt, base = _run(tmp_path / "dapt", {"mcq": MARKS_B}), _run(tmp_path / "base", {"mcq": MARKS_A})
    caplog.set_level("WARNING")
    rows = paired_rows([("train", train), ("dapt", dapt), ("base", base)])
    assert [(r["run"], r["against"], r["metric"]) for r in rows] == [("base", "dapt", "mcq.acc")]
    said = [r.getMessage() for r in caplog.records if "paired against" in r.getMessage()]
    assert said == [
        "compare: paired against dapt, the first run named with per-item files of a task a later run has (train: none)"
    ]


def test_a_validation_file_beside_a_manifest_without_the_final_validation_is_not_the_runs(tmp_path):
    """An overwritten folder's new run that failed before its final validation: the file is the old run's."""
    a = train_folder(tmp_path / "0", [300.0, 350.0, 420.0, 500.0])
    b = train_folder(tmp_path / "1", [290.0, 345.0, 410.0, 480.0])
    manifest = json.loads((b / "manifest.json").read_text())
    (b / "manifest.json").write_text(json.dumps({**manifest, "status": "failed", "metrics": {"before": {}}}))
    rows = paired_rows([("a", a), ("b", b)])  # said as b's having none, not paired with the old file
    assert [(r["metric"], r["verdict"], r["reason"]) for r in rows] == [
        ("train.val", "not paired", "the other has none (b)")
    ]
