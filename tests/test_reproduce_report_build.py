"""The report's own build in reproduce.py: the models it opens rebuilt first (or not, with report_models=false;
a rebuild that fails leaves the report to say so, a kill stops), and the report folder swapped in whole, holding
only this build's records (a failed build keeps the last one; a run folder inside it is refused)."""

import contextlib
import json
import os
import types
from pathlib import Path

import pytest

from chipadapt.errors import ChipadaptError


def test_a_report_model_that_cannot_be_rebuilt_leaves_the_report_to_say_so_but_a_kill_stops(monkeypatch, caplog):
    from chipadapt.reproduce import report_models as run
    from chipadapt.reproduce.runner import Terminated

    def failing(steps, out):
        raise ChipadaptError("reproduce: rebuilding the model of tokenizer failed (exit 1)")

    monkeypatch.setattr(run, "rebuild_for_report", failing)
    run.report_models([], Path("out"))  # a warning: the report is still built from the records
    assert "the report is built without that model's files" in caplog.text

    def killed(steps, out):
        raise Terminated("reproduce: terminated by signal 15")

    monkeypatch.setattr(run, "rebuild_for_report", killed)
    with pytest.raises(Terminated):
        run.report_models([], Path("out"))


@pytest.fixture
def report_only(tmp_path, monkeypatch):
    """reproduce.run without the base model, the report's model rebuilds or Hydra's runtime config."""
    from chipadapt.reproduce import run as reproduce

    monkeypatch.setenv("CHIPADAPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(reproduce, "resolve_model_folder", lambda model: tmp_path / "instruct")
    rebuilt = []
    monkeypatch.setattr(reproduce, "report_models", lambda steps, out: rebuilt.append(out))

    @contextlib.contextmanager
    def unrecorded(cfg, kind, out):  # the manifest reads Hydra's runtime config, which compose() lacks
        yield types.SimpleNamespace(update=lambda *args: None)

    monkeypatch.setattr("chipadapt.job.recorded_job", unrecorded)
    return reproduce, rebuilt


def test_report_models_false_builds_the_report_from_the_records_alone(tmp_path, report_only):
    from test_reproduce import compose_reproduce

    reproduce, rebuilt = report_only
    common = ["variant=smoke", f"out={tmp_path / 'out'}", f"report_dir={tmp_path / 'report'}", "only=[report]"]
    assert reproduce.run(compose_reproduce([*common, "report_models=false"])).is_file() and rebuilt == []
    reproduce.run(compose_reproduce(common))  # the default rebuilds what the report opens first
    assert rebuilt == [tmp_path / "out"]


def test_a_rebuilt_report_holds_only_this_builds_records_and_a_failed_build_keeps_the_last(
    tmp_path, report_only, monkeypatch
):
    from test_reproduce import compose_reproduce

    from chipadapt.reproduce.report import build

    reproduce, _ = report_only
    report = tmp_path / "report"

    def run_from(out: Path, steps: list[str]) -> Path:
        for name in steps:
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / "results.json").write_text(json.dumps({"status": "failed"}))
        (out / "steps.json").write_text(json.dumps({n: {"status": "failed", "seconds": 1.0} for n in steps}))
        args = ["variant=smoke", f"out={out}", f"report_dir={report}", "only=[report]", "report_models=false"]
        return reproduce.run(compose_reproduce(args))

    first = run_from(tmp_path / "a", ["dapt", "sft"])
    assert first == report / "REPORT.md" and (report / "runs" / "sft" / "results.json").is_file()
    run_from(tmp_path / "b", ["dapt"])
    # The second build's folder has no record of a step its run folder does not have.
    assert not (report / "runs" / "sft").exists() and (report / "runs" / "dapt" / "results.json").is_file()
    kept = (report / "REPORT.md").read_text()

    def broken(cfg, steps, out, folder, final=None):
        (folder / "REPORT.md").write_text("half a report")
        raise RuntimeError("a section failed")

    working = build.build_report
    monkeypatch.setattr(build, "build_report", broken)
    with pytest.raises(RuntimeError, match="a section failed"):
        run_from(tmp_path / "a", ["dapt", "sft"])
    assert (report / "REPORT.md").read_text() == kept
    # No staging folder left behind (the build lock stays, as every cache entry's does).
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.")] == [".report.build.lock"]
    umask = os.umask(0)
    os.umask(umask)
    assert report.stat().st_mode & 0o777 == 0o777 & ~umask  # as readable as a folder made here, not private
    monkeypatch.setattr(build, "build_report", working)
    # A run folder inside the report folder would go with the old report at the swap: refused first.
    (report / "run" / "dapt").mkdir(parents=True)
    (report / "run" / "dapt" / "model.safetensors").write_text("hours of training")
    with pytest.raises(ChipadaptError, match="report_dir: .* holds out"):
        reproduce.run(
            compose_reproduce(["variant=smoke", f"out={report / 'run'}", f"report_dir={report}", "only=[report]"])
        )
    assert (report / "run" / "dapt" / "model.safetensors").is_file()
