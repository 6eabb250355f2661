"""Reports and the records copied beside them name no machine's absolute paths."""

import json
import os
from pathlib import Path

import pytest
from conftest import ROOT
from test_reproduce import compose_reproduce

REPORTS = ROOT / "experiments" / "reports"


def machine_paths(extra: list[str]) -> list[str]:
    home = str(Path.home())
    return [p for p in {str(ROOT), str(ROOT.parent), home, *extra} if p != "/"]


def offending(folder: Path, paths: list[str]) -> list[str]:
    found = []
    for file in folder.rglob("*"):
        if file.is_file() and file.suffix in (".md", ".json", ".yaml", ".csv", ".log"):
            text = file.read_text(encoding="utf-8")
            found += [f"{file.relative_to(folder)}: {p}" for p in paths if p in text]
    return found


def test_generated_report_and_records_have_no_absolute_paths(tmp_path, monkeypatch):
    from chipadapt.reproduce.report.build import build_report
    from chipadapt.reproduce.steps import load_steps

    cache = tmp_path / "cache"
    monkeypatch.setenv("CHIPADAPT_CACHE", str(cache))
    out, report = tmp_path / "out", tmp_path / "report"
    cfg = compose_reproduce(["variant=smoke", f"out={out}", f"report_dir={report}"])
    steps = load_steps(cfg)
    ledger = {}
    for step in steps[:3]:  # steps whose records hold the paths a real run writes (failed: no section reads them)
        folder = out / step.name
        (folder / ".hydra").mkdir(parents=True)
        (folder / "manifest.json").write_text(
            json.dumps(
                {
                    "status": "failed",
                    "git": {"commit": "0" * 40},
                    "inputs": {
                        "model": str(cache / "models" / "tiny"),
                        "data": str(ROOT / "src/chipadapt/resources/sample_corpus"),
                    },
                    "config": {
                        "paths": {"output_dir": str(folder), "shared_data": str(ROOT.parent / "shared" / "data")}
                    },
                }
            )
        )
        (folder / ".hydra" / "overrides.yaml").write_text(
            f"- hydra.run.dir={folder}\n- model.path={Path.home() / 'models' / 'x'}\n"
        )
        ledger[step.name] = {"status": "failed", "seconds": 1.0, "command": step.command(out)}
    (out / "steps.json").write_text(json.dumps(ledger))
    build_report(cfg, steps, out, report)
    assert (report / "REPORT.md").is_file() and (report / "runs" / steps[0].name / "manifest.json").is_file()
    assert offending(report, machine_paths([str(tmp_path), str(cache)])) == []
    copied = json.loads((report / "runs" / steps[0].name / "manifest.json").read_text())
    assert copied["inputs"]["model"] == "$CHIPADAPT_CACHE/models/tiny"
    assert copied["inputs"]["data"] == "src/chipadapt/resources/sample_corpus"
    assert copied["config"]["paths"]["shared_data"] == "../shared/data"
    text = (report / "REPORT.md").read_text()
    assert f"hydra.run.dir=$REPRODUCE_OUT/{steps[0].name}" in text
    # The header names a folder outside the repository by the same name, not as a mangled relative path.
    assert "from `$REPRODUCE_OUT`" in text and "..$REPRODUCE_OUT" not in text
    assert "Rebuild with `python reproduce.py variant=smoke out=$REPRODUCE_OUT only=[report]`" in text


@pytest.mark.skipif(not REPORTS.is_dir(), reason="no committed reports")
def test_committed_reports_have_no_absolute_paths():
    cache = os.environ.get("CHIPADAPT_CACHE")
    paths = machine_paths([cache] if cache else []) + ["/root/", "/tmp/", "/home/"]
    assert offending(REPORTS, paths) == []


def test_a_run_folder_in_the_cache_is_named_as_the_cache_and_the_rebuild_says_how_to_reach_it(tmp_path, monkeypatch):
    # The full variant's folder kept in the cache so that a fresh clone does not lose it.
    from chipadapt.io.portable_paths import PortablePaths
    from chipadapt.reproduce.report.build import out_override

    cache = tmp_path / "cache"
    monkeypatch.setenv("CHIPADAPT_CACHE", str(cache))
    out = cache / "reproduce_small" / "full"
    assert PortablePaths(out)(f"from `{out}`; {out}/sft/model") == (
        "from `$CHIPADAPT_CACHE/reproduce_small/full`; $CHIPADAPT_CACHE/reproduce_small/full/sft/model"
    )
    assert out_override(out) == " 'out=${paths.cache_dir}/reproduce_small/full'"
    assert out_override(ROOT / "outputs" / "reproduce_small" / "full") == " out=outputs/reproduce_small/full"
    assert out_override(tmp_path / "elsewhere") == " out=$REPRODUCE_OUT"
    assert out_override(cache) == " 'out=${paths.cache_dir}'"


def test_git_state_ignores_only_the_folder_the_caller_writes(tmp_path):
    # A report written into the repository it documents is no change to the code that built it.
    import subprocess

    from chipadapt.manifest import git_state

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "REPORT.md").write_text("# report\n")
    assert git_state(repo=tmp_path)["dirty"] is True
    assert git_state(ignore=tmp_path / "report", repo=tmp_path) == {
        "commit": git_state(repo=tmp_path)["commit"],
        "dirty": False,
    }
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(ignore=tmp_path / "report", repo=tmp_path)["dirty"] is True
    # A report folder outside the checkout (report_dir=/tmp/r) is no reason to call a dirty tree clean.
    assert git_state(ignore=tmp_path.parent / "elsewhere", repo=tmp_path)["dirty"] is True
