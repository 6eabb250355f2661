"""merge.py's command line over a lambda sweep: its jobs, their evaluation and the sweep report; the sweep run
again after a preemption, going on from what its jobs finished; and what is refused in the same folders (a sweep
of other lambdas before its first job, a single run in a job's folder, a chip model retrained in place).
One evaluated sweep serves the file: each fresh merge.py pays seconds of imports before it merges anything.
A single run's command line (output=, hydra.run.dir=) is test_mergekit_config.py's
test_merge_cli_reads_a_mergekit_config."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_jsonl
from helpers.merge_jobs import merge_cfg, tiny_pair
from safetensors.torch import load_file, save_file

from chipadapt.errors import ChipadaptError
from chipadapt.merge.run import run

pytestmark = pytest.mark.integration


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def merge_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "merge.py"), *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """`merge.py -m merge.lam=0,0.5,1` evaluated on perplexity and IFEval, once for the file. What the sweep
    wrote is read here, before a test runs the sweep again over it."""
    tmp = tmp_path_factory.mktemp("sweep_cli")
    chip, instruct = tiny_pair(tmp)
    prompts = write_jsonl(
        tmp / "if.jsonl",
        [
            {
                "key": 1,
                "prompt": "Say hi without commas.",
                "instruction_id_list": ["punctuation:no_comma"],
                "kwargs": [{}],
            }
        ],
    )
    evaluation = [
        "eval=[perplexity,ifeval]",
        "eval.perplexity.max_documents=1",
        f"eval.ifeval.path={prompts}",
        f"eval.ifeval.nltk_data={tmp}",
        "eval.ifeval.max_new_tokens=4",
    ]
    folder = tmp / "sweep"
    models = [f"models.chip={chip}", f"models.instruct={instruct}"]
    proc = merge_py("-m", "merge.lam=0,0.5,1", *models, *evaluation, f"hydra.sweep.dir={folder}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = {
        "lams": sorted(
            json.loads((folder / str(n) / "model" / "merge_manifest.json").read_text())["summary"]["lam"]
            for n in range(3)
        ),
        "report": json.loads((folder / "sweep_report.json").read_text()),
        "plot_bytes": (folder / "sweep_report.png").stat().st_size,
        "csv": (folder / "sweep_report.csv").read_text(),
        "job_0_merge_manifest": json.loads((folder / "0" / "model" / "merge_manifest.json").read_text()),
    }
    return {"chip": chip, "instruct": instruct, "folder": folder, "models": models, "eval": evaluation, **written}


def test_lambda_sweep_with_evaluation_writes_the_report_plot_and_chosen_lambda(sweep):
    assert sweep["lams"] == [0.0, 0.5, 1.0]
    report = sweep["report"]
    assert sorted(job["lam"] for job in report["jobs"]) == [0.0, 0.5, 1.0]
    assert report["chosen"]["lam"] in (0.0, 0.5, 1.0)
    assert sweep["plot_bytes"] > 1000
    assert sweep["csv"].count("\n") == 4
    assert "evaluation" in sweep["job_0_merge_manifest"]


def test_a_sweep_run_again_goes_on_from_its_jobs_and_refuses_other_settings(sweep):
    folder, chip, instruct = sweep["folder"], sweep["chip"], sweep["instruct"]
    settings = [*sweep["models"], *sweep["eval"]]
    # The sweep again, as after a preemption: job 1 was interrupted after publishing its model (its
    # evaluation unfinished), job 2 never started. Job 0 is not merged again (its model keeps its
    # time); job 1 keeps its complete merged model and goes on with the rest; job 2 runs.
    manifest1 = json.loads((folder / "1" / "manifest.json").read_text())
    (folder / "1" / "manifest.json").write_text(json.dumps({**manifest1, "status": "interrupted"}))
    shutil.rmtree(folder / "2")
    stamps = [(folder / str(n) / "model" / "model.safetensors").stat().st_mtime_ns for n in (0, 1)]
    again = merge_py("-m", "merge.lam=0,0.5,1", *settings, f"hydra.sweep.dir={folder}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert [(folder / str(n) / "model" / "model.safetensors").stat().st_mtime_ns for n in (0, 1)] == stamps
    assert json.loads((folder / "1" / "manifest.json").read_text())["status"] == "completed"
    assert (folder / "2" / "model" / "model.safetensors").is_file()
    log = again.stdout + again.stderr
    assert "completed before with these settings" in log and "did not complete before" in log
    assert "holds this job's merged model; not merged again" in log
    # Other settings in the same folders: refused as before. A sweep of other lambdas is refused before its
    # first job: nothing runs, multirun.yaml, every job's .hydra/, manifest and model stay as they were (job
    # #0, the same settings, would have passed and logged).
    before = snapshot(folder)
    other = merge_py("-m", "merge.lam=0,0.7,1", *settings, f"hydra.sweep.dir={folder}")
    assert other.returncode == 2, other.stderr[-2000:]
    assert other.stderr.strip().splitlines()[-1] == (
        f"chipadapt: error: hydra.sweep.dir: job #1 (merge.lam=0.7) would merge into {folder / '1' / 'model'}, "
        "which holds a merged model of other settings (merge.lam: 0.5 -> 0.7); another hydra.sweep.dir keeps both, "
        "or overwrite=true replaces it"
    )
    assert snapshot(folder) == before
    # A single run refused in a job's folder (no sweep to check beforehand) is refused before it records
    # itself: .hydra/ is put back, manifest.json and the logger files are the lam=0.5 job's.
    job = folder / "1"
    kept = {name: data for name, data in snapshot(job).items() if name != "merge.log"}
    alone = merge_py("merge.lam=0.7", *settings, f"hydra.run.dir={job}")
    assert alone.returncode == 2 and "holds a previous merge output, merged with other settings" in alone.stderr
    assert {name: data for name, data in snapshot(job).items() if name != "merge.log"} == kept
    # A chip model retrained in place: job 0 of the same sweep is refused by the job itself (the sweep's check
    # beforehand compares settings only, and passed them above), here in-process.
    tensors = load_file(chip / "model.safetensors")
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + 1.0
    save_file(tensors, chip / "model.safetensors", metadata={"format": "pt"})
    retrained = r"holds a previous merge output, merged with these settings from other input models \(models.chip "
    with pytest.raises(ChipadaptError, match=retrained):
        run(merge_cfg(chip, instruct, folder / "0", "merge.lam=0", *sweep["eval"]))
