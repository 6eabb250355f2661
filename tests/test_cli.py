"""train.py as a user runs it: bad input fails in one line with nothing left looking complete;
a multirun sweep writes one folder per job."""

import json

import pytest
from conftest import TINY_FAST, read_manifest, run_train, write_jsonl
from helpers.train_refusals import train_refusal

pytestmark = pytest.mark.integration


def assert_nothing_looks_complete(run_dir):
    assert not (run_dir / "model").exists()
    if (run_dir / "manifest.json").exists():
        assert read_manifest(run_dir)["status"] == "failed"


def bad_input_args(case, tmp_path):
    if case == "missing_model":
        return ["model.path=/nonexistent/llama"]
    if case == "empty_corpus":
        (tmp_path / "empty.jsonl").write_text("\n\n")
        return ["~data.sources", f"+data.sources.only.path={tmp_path / 'empty.jsonl'}"]
    if case == "malformed_jsonl":
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"text": "module a; endmodule"}) + "\n{not json}\n")
        return ["~data.sources", f"+data.sources.only.path={bad}"]
    assert case == "seq_len_too_long"
    return ["data.seq_len=4096"]


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing_model", "model.path: /nonexistent/llama does not exist"),
        ("empty_corpus", "data.sources.only: "),
        ("malformed_jsonl", "bad.jsonl:2: malformed JSON"),
        ("seq_len_too_long", "data.seq_len=4096 exceeds the model's context of 512 tokens"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_finished_output(tmp_path, case, expected):
    """train.py's job in this process: a fresh train.py refusing bad data in one line, exit status 2, its
    manifest not completed, is tests/faults/test_train_faults.py::test_bad_training_data_is_one_line_from_train_py."""
    run_dir = tmp_path / "run"
    assert expected in train_refusal([*TINY_FAST, *bad_input_args(case, tmp_path)], run_dir)
    assert_nothing_looks_complete(run_dir)


def test_unknown_config_key_is_rejected_by_name(tmp_path):
    proc = run_train([*TINY_FAST, "optim.learning_rat=1e-4", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode != 0
    assert "Could not override 'optim.learning_rat'" in proc.stderr
    assert not (tmp_path / "run" / "model").exists()


def test_multirun_sweep_writes_one_run_folder_per_job(tmp_path):
    corpus = write_jsonl(
        tmp_path / "c.jsonl", [{"text": f"module m{i}; wire w{i}; endmodule // {'x' * 200}"} for i in range(20)]
    )
    sweep = tmp_path / "sweep"
    proc = run_train(
        [
            "-m",
            *TINY_FAST,
            "optim.lr=1e-4,5e-6",
            "data.seq_len=64,128",
            "~data.sources",
            f"+data.sources.rtl.path={corpus}",
            "trainer.max_steps=1",
            "stage.validate_before=false",  # the jobs' folders are the point, not the base model's scores
            "data.val_max_bytes=128",
            f"hydra.sweep.dir={sweep}",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        manifest = read_manifest(job)
        assert manifest["status"] == "completed"
        assert (job / "model" / "model.safetensors").is_file() and (job / "metrics.csv").is_file()
        seen.add((manifest["config"]["optim"]["lr"], manifest["config"]["data"]["seq_len"]))
    assert seen == {(1e-4, 64), (1e-4, 128), (5e-6, 64), (5e-6, 128)}
