"""A finished task's record holds the digest of the per-item file it was saved after: a record of another run
left beside new per-item records (a run killed between writing its items and its record) is neither kept
nor read back for its answers, nor kept in results.json."""

import json

from chipadapt.eval.finished_tasks import ITEMS_DIGEST, FinishedTasks
from chipadapt.eval.items import write_items

ITEMS = [{"id": "a", "prediction": "first", "scores": {"x": 1.0}}]
MEASURED = {"settings": {}, "inputs": {}, "model": None, "running": None, "answers_key": "answers"}


def finished(tmp_path) -> FinishedTasks:
    records = FinishedTasks(tmp_path, {})
    write_items(tmp_path, "task", ITEMS)
    records.save("task", "key", {"x": 1.0}, True, MEASURED)
    return records


def test_the_record_of_the_items_beside_it_is_kept(tmp_path):
    records = finished(tmp_path)
    assert records.load("task", "key") == {"x": 1.0}
    assert records.recorded_answers("task", "answers") == ({"a": ITEMS[0]}, {"x": 1.0})
    assert records.earlier_results(set(), None) == {"task": {"x": 1.0}}


def test_a_record_beside_another_runs_items_is_not_taken(tmp_path):
    records = finished(tmp_path)
    write_items(tmp_path, "task", [{**ITEMS[0], "prediction": "another run's"}])  # its record never written
    assert records.load("task", "key") is None
    assert records.recorded_answers("task", "answers") == ({}, {})
    assert records.earlier_results(set(), None) == {}


def test_a_record_written_before_the_digest(tmp_path):
    """Its results are kept while its per-item file is there (as before: its key names older code, so only
    a record edited by hand gets this far), but its items are not taken as answers of this code's runs."""
    records = finished(tmp_path)
    path = tmp_path / "tasks" / "task.json"
    record = json.loads(path.read_text())
    del record[ITEMS_DIGEST]
    path.write_text(json.dumps(record))
    assert records.load("task", "key") == {"x": 1.0}
    assert records.recorded_answers("task", "answers") == ({}, {})
    (tmp_path / "task_items.jsonl").unlink()
    assert records.load("task", "key") is None
