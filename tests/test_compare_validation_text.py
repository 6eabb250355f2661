"""compare.py says when training runs' validation figures were read on other text (a seq_len sweep from
before data.val_max_bytes scored its starting model 4.867 vs 4.703 bits per byte on other text, shown
side by side as if comparable), and tells a killed job from a running one by its folder lock."""

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from chipadapt.io.lock import run_folder_lock


def text(bytes_: int, cut: int = 0, fingerprint: str = "f1", documents: int = 4) -> dict:
    record = {"bytes": bytes_, "documents": documents, "cut_token_bytes": cut, "documents_fingerprint": fingerprint}
    return {"domain": record, "general": {**record, "documents_fingerprint": "g1"}}


def train_run(
    path: Path, overrides: list[str], val_text: dict | None, status="completed", seq_len=64, limit=None
) -> Path:
    path.mkdir(parents=True)
    metrics = {"after": {"domain": {"bpb": 4.8}, "general": {"bpb": 5.1}}} if status == "completed" else {}
    config = {
        "data": {"seq_len": seq_len, "val_max_sequences": 16},  # a run from before val_max_bytes
        "tokenizer": {"name": "base"},
        "trainer": {"limit_val_batches": limit},
    }
    manifest = {
        "kind": "train",
        "status": status,
        "overrides": overrides,
        "config": config,
        "data": {"val_text": val_text} if val_text is not None else {"val_sequences": {"domain": 16}},
        "metrics": metrics,
        "results": {},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def compare_table(tmp_path: Path, runs: list[Path], metrics=("val/domain/bpb",)) -> tuple[list[str], list[dict]]:
    from chipadapt.eval.compare import compare

    out = tmp_path / "cmp"
    cfg = OmegaConf.create(
        {
            "runs": [str(r) for r in runs],
            "labels": None,
            "metrics": list(metrics),
            "x": None,
            "output": str(out),
            "overwrite": True,
            "paths": {"output_dir": str(out)},
            "max_plot_metrics": 9,
        }
    )
    compare(cfg)
    return (out / "compare.md").read_text().splitlines(), list(csv.DictReader((out / "compare.csv").open()))


def test_a_seq_len_sweep_on_the_same_text_compares_and_other_text_is_said(tmp_path):
    # Another seq_len or tokenizer: the same documents, bytes within the token the last one was cut at.
    same = [
        train_run(tmp_path / "a", ["data.seq_len=64"], text(3003, cut=5)),
        train_run(tmp_path / "b", ["data.seq_len=128"], text(3006, cut=6), seq_len=128),
    ]
    md, rows = compare_table(tmp_path / "same", same)
    assert md[2] == "| data.seq_len=64 | 4.8 |" and md[3] == "| data.seq_len=128 | 4.8 |"
    assert [r["validation_text"] for r in rows] == ["", ""]
    # A cap in sequences: other text at another seq_len.
    other = train_run(tmp_path / "c", ["data.seq_len=256"], text(8100, cut=4), seq_len=256)
    md, rows = compare_table(tmp_path / "other", [*same, other])
    assert md[4].startswith(
        "| data.seq_len=256 (val/ not comparable: validation text differs: domain 3003 vs 8100 bytes)"
    )
    assert rows[2]["validation_text"] == "validation text differs: domain 3003 vs 8100 bytes"
    assert any("compare only on the same held-out text" in line for line in md)
    elsewhere = train_run(tmp_path / "d", ["data.seq_len=32"], text(3003, cut=5, fingerprint="f2"), seq_len=32)
    _, rows = compare_table(tmp_path / "docs", [same[0], elsewhere])
    by_run = {r["run"]: r["validation_text"] for r in rows}
    assert by_run == {"data.seq_len=64": "", "data.seq_len=32": "validation text differs: domain reads other documents"}


@pytest.mark.parametrize("limit", [2, 1])  # the integer 1 is one batch (1.0 would be all of them)
def test_validation_cut_to_its_first_batches_reads_other_text_at_another_seq_len(tmp_path, limit):
    runs = [
        train_run(tmp_path / "a", ["data.seq_len=64"], text(3003), limit=limit),
        train_run(tmp_path / "b", ["data.seq_len=128"], text(3003), seq_len=128, limit=limit),
    ]
    _, rows = compare_table(tmp_path / "cmp", runs)
    assert rows[1]["validation_text"] == (
        "validation cut to batches by trainer.limit_val_batches, and data.seq_len 64 vs 128"
    )


def test_runs_from_before_the_record_compare_only_with_the_same_settings(tmp_path):
    old = [train_run(tmp_path / "a", ["optim.lr=1e-4"], None), train_run(tmp_path / "b", ["optim.lr=5e-6"], None)]
    _, rows = compare_table(tmp_path / "lr", old)
    assert [r["validation_text"] for r in rows] == ["", ""]  # an lr sweep of the same settings read the same text
    longer = train_run(tmp_path / "c", ["data.seq_len=128"], None, seq_len=128)
    _, rows = compare_table(tmp_path / "seq", [old[0], longer])
    assert rows[1]["validation_text"] == (
        "validation text not recorded (a run from before data.val_max_bytes) and data.seq_len 64 vs 128"
    )
    new = train_run(tmp_path / "d", ["optim.lr=1e-3"], text(3003))
    _, rows = compare_table(tmp_path / "mixed", [new, old[0]])
    by_run = {r["run"]: r["validation_text"] for r in rows}
    assert by_run == {
        "optim.lr=1e-3": "",
        "optim.lr=1e-4": "validation text not recorded (a run from before data.val_max_bytes)",
    }
    _, rows = compare_table(tmp_path / "mixed2", [old[0], new])  # the first run named is the reference
    by_run = {r["run"]: r["validation_text"] for r in rows}
    assert by_run["optim.lr=1e-3"].startswith("optim.lr=1e-4 did not record its validation text")


def test_a_killed_job_is_told_from_a_running_one_by_its_folder_lock(tmp_path):
    done = train_run(tmp_path / "done", ["optim=adam_const"], text(3003))
    job = train_run(tmp_path / "job", ["optim=adamw_cosine"], text(3003), status="running")
    with run_folder_lock(job):  # a live process holds it
        md, rows = compare_table(tmp_path / "live", [done, job])
    assert md[3].startswith("| optim=adamw_cosine (running) |") and rows[1]["status"] == "running"
    # SIGKILL leaves the manifest "running"; the lock died with the process
    md, rows = compare_table(tmp_path / "dead", [done, job])
    assert md[3].startswith(
        "| optim=adamw_cosine (stopped without finishing: status running, but no live process holds its lock) |"
    )
    assert rows[1]["status"] == "stopped"
    (job / ".chipadapt.lock").unlink()  # a folder from before the locks: nothing tells, as before
    md, _ = compare_table(tmp_path / "unknown", [done, job])
    assert md[3].startswith("| optim=adamw_cosine (running) |")
