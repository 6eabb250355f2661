"""A refused attempt puts back the `.hydra/` records of a run that keeps no manifest (curation, compare.py),
as it does a training run's (the trial: `python -m chipadapt.data.curate hydra.run.dir=DIR
'data.curate.inputs=[/nonexistent]'` into a completed curation printed its one error line, exit 2, and
left DIR/.hydra/ describing the refused inputs; run from another working directory, hydra.yaml's too)."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.faults import assert_user_error, run_entry, snapshot

from chipadapt import run_folder_guard
from chipadapt.run_folder_guard import remember_records, restore_records_after_refusal


def run_records(folder: Path, output: str) -> None:
    """A completed run of a command without a manifest: its .hydra/ and what it published."""
    (folder / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (folder / ".hydra" / name).write_text(f"earlier run's {name}\n")
    (folder / output).parent.mkdir(parents=True, exist_ok=True)
    (folder / output).write_text("published\n")


@pytest.fixture
def job_in(monkeypatch):
    """Make `folder` the current Hydra job's run folder, as restore_records_after_refusal reads it."""
    from hydra.core.hydra_config import HydraConfig

    def set_folder(folder: Path) -> None:
        monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
        monkeypatch.setattr(
            HydraConfig, "get", staticmethod(lambda: SimpleNamespace(runtime=SimpleNamespace(output_dir=str(folder))))
        )

    monkeypatch.setattr(run_folder_guard, "_SWEEP", {})
    return set_folder


@pytest.mark.parametrize("output", ["corpus/curation_report.json", "compare.csv"])
def test_a_refused_attempt_puts_back_the_records_of_a_run_without_manifest(tmp_path, job_in, output):
    folder = tmp_path / "run"
    run_records(folder, output)
    before = snapshot(folder)
    remember_records(folder)  # on_run_start, before Hydra writes this attempt's .hydra/
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (folder / ".hydra" / name).write_text(f"refused attempt's {name}\n")
    job_in(folder)
    restore_records_after_refusal()
    assert snapshot(folder) == before


@pytest.mark.parametrize("output", ["corpus/curation_report.json", "compare.csv"])
def test_an_attempt_that_published_keeps_its_own_records(tmp_path, job_in, output):
    folder = tmp_path / "run"
    run_records(folder, output)
    remember_records(folder)
    (folder / ".hydra" / "config.yaml").write_text("this attempt's config\n")
    (folder / output).write_text("published again\n")  # overwrite=true, then refused at its very end
    job_in(folder)
    restore_records_after_refusal()
    assert (folder / ".hydra" / "config.yaml").read_text() == "this attempt's config\n"


def test_a_refused_curation_leaves_the_completed_curations_records(tmp_path):
    inputs = tmp_path / "rtl"
    inputs.mkdir()
    (inputs / "counter.v").write_text(
        "module counter(input clk, output reg [3:0] q);\n  always @(posedge clk) q <= q + 1;\nendmodule\n"
    )
    folder = tmp_path / "curated"
    curate = ["-m chipadapt.data.curate", [f"hydra.run.dir={folder}", "data.curate.workers=1"]]
    done = run_entry(curate[0], [*curate[1], f"data.curate.inputs=[{inputs}]"])
    assert done.returncode == 0, done.stderr[-2000:]
    before = snapshot(folder / ".hydra")
    refused = [*curate[1], "data.curate.inputs=[/nonexistent]"]
    assert_user_error(run_entry(curate[0], refused), "data.curate.inputs[0]: /nonexistent does not exist")
    assert snapshot(folder / ".hydra") == before
    # From another working directory, which hydra.yaml records.
    elsewhere = subprocess.run(
        [sys.executable, "-m", "chipadapt.data.curate", *refused],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert_user_error(elsewhere, "/nonexistent does not exist")
    assert snapshot(folder / ".hydra") == before
