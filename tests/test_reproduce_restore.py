"""A reproduction begun on one machine continues on another from its report's records: steps done there
stay done, and a model left out is retrained only when a step still to run needs it, then checked
against its fingerprint."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import fake_step_scripts
from safetensors.torch import save_file

from chipadapt.errors import ChipadaptError
from chipadapt.io.portable_paths import PortablePaths
from chipadapt.reproduce.fingerprint import (
    FINGERPRINT,
    LOSS_TOLERANCE,
    deviation,
    ensure_fingerprint,
    fingerprint,
    loss_difference,
)
from chipadapt.reproduce.ledger import Ledger
from chipadapt.reproduce.rebuild import REBUILD_TOLERANCE
from chipadapt.reproduce.report.archive import archive_records
from chipadapt.reproduce.report_models import rebuild_for_report, report_rebuilds
from chipadapt.reproduce.restore import restore
from chipadapt.reproduce.runner import plan, run_steps
from chipadapt.reproduce.steps import Step


def save_model(folder: Path, scale: float = 1.0, shape=(16, 8)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    weights = {"layer.weight": torch.randn(*shape, generator=generator), "bias": torch.ones(8)}
    save_file({k: (v * scale).contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"))


def test_the_fingerprint_tells_the_same_model_a_near_copy_and_another(tmp_path):
    save_model(tmp_path / "a")
    save_model(tmp_path / "same")
    save_model(tmp_path / "near", scale=1 + 1e-7)
    save_model(tmp_path / "far", scale=1.01)
    save_model(tmp_path / "other", shape=(8, 16))
    recorded = fingerprint(tmp_path / "a")
    assert deviation(recorded, fingerprint(tmp_path / "same")) == 0.0
    assert 0 < deviation(recorded, fingerprint(tmp_path / "near")) <= REBUILD_TOLERANCE
    assert deviation(recorded, fingerprint(tmp_path / "far")) > REBUILD_TOLERANCE
    assert deviation(recorded, fingerprint(tmp_path / "other")) == float("inf")
    assert len(json.dumps(recorded)) < 4_000  # travels in the repository


def test_the_fingerprint_is_rewritten_only_when_the_model_is_newer(tmp_path):
    step = tmp_path / "dapt"
    assert ensure_fingerprint(step) is None  # no model: nothing to record
    save_model(step / "model")
    path = ensure_fingerprint(step)
    written = path.stat().st_mtime_ns
    assert ensure_fingerprint(step) == path and path.stat().st_mtime_ns == written


FAKE_TRAIN = """
import os, sys, pathlib
run_dir = pathlib.Path(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("hydra.run.dir=")))
run_dir.mkdir(parents=True, exist_ok=True)
(run_dir / "calls").open("a").write(" ".join(sys.argv[1:]) + "\\n")
(run_dir / "results.json").write_text('{"run_dir": "%s"}' % run_dir)
# Lightning's CSV log: a training loss per step (FAKE_LOSS_DRIFT: another run's losses).
loss_scale = 1.0 + float(os.environ.get("FAKE_LOSS_DRIFT", "0"))
rows = "".join(f"0,{step},{2.0 / (step + 1) * loss_scale!r}\\n" for step in range(3))
(run_dir / "metrics.csv").write_text("epoch,step,train/loss\\n" + rows)
if "train" in sys.argv[0]:
    # numpy, not torch: the same safetensors file without a torch import (seconds of CPU) per step run.
    import numpy as np
    from safetensors.numpy import save_file
    (run_dir / "model").mkdir(exist_ok=True)
    scale = np.float32(1.0 + float(os.environ.get("FAKE_DRIFT", "0")))
    weight = np.arange(64, dtype=np.float32).reshape(8, 8) * scale
    save_file({"w": weight}, str(run_dir / "model" / "model.safetensors"))
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"resume state")
"""


def chain(out: Path) -> list[Step]:
    """As in conf/reproduce.yaml: the models are read through paths in the arguments; `merge` names the
    SFT model without needing the step (the best-setting merges need only their choice's candidates)."""
    return [
        Step("dapt_short", "train.py", ("lr=2",), "s"),
        Step("dapt", "train.py", ("lr=1",), "s", needs=("dapt_short",)),
        Step("sft", "train.py", (f"model.path={out}/dapt/model",), "s", needs=("dapt",)),
        Step("eval_sft", "evaluate.py", (f"model.path={out}/sft/model",), "s", needs=("sft",)),
        Step("merge", "evaluate.py", (f"models.chip={out}/sft/model", "lam=0.5"), "s", needs=("eval_sft",)),
    ]


@pytest.fixture(scope="module")
def machine_one(tmp_path_factory) -> Path:
    """A run of dapt, sft and eval_sft on machine one, archived as a report's runs/ records in its repository
    (repo/report/runs): run once for the file, each test takes a copy (two_machines)."""
    base = tmp_path_factory.mktemp("machine_one")
    with pytest.MonkeyPatch.context() as monkeypatch:
        repo = fake_step_scripts(base, monkeypatch, FAKE_TRAIN)
        monkeypatch.setattr("chipadapt.io.portable_paths.ROOT", repo)
        monkeypatch.setenv("CHIPADAPT_CACHE", str(base / "cache_one"))
        first = base / "cache_one" / "run"
        run_steps(chain(first), first, {"dapt_short", "dapt", "sft", "eval_sft"}, set())
        archive_records(
            first, ["dapt_short", "dapt", "sft", "eval_sft"], repo / "report" / "runs", PortablePaths(first)
        )
    return base


@pytest.fixture
def two_machines(machine_one, tmp_path, monkeypatch):
    """Machine one's repository with its records, copied to this test (tests change the records), and
    machine two's cache; (records, the run folder they restore into)."""
    repo = tmp_path / "repo"
    shutil.copytree(machine_one / "repo", repo)
    monkeypatch.setattr("chipadapt.reproduce.step_process.ROOT", repo)
    monkeypatch.setattr("chipadapt.reproduce.restore.ROOT", repo)
    monkeypatch.setattr("chipadapt.io.portable_paths.ROOT", repo)
    monkeypatch.setenv("CHIPADAPT_CACHE", str(tmp_path / "cache_two"))
    return repo / "report" / "runs", tmp_path / "cache_two" / "run"


def test_records_carry_no_machine_path_and_come_back_with_this_machines(two_machines, machine_one):
    records, second = two_machines
    assert str(machine_one) not in (records / "steps.json").read_text()
    assert (records / "dapt" / FINGERPRINT).is_file() and not (records / "dapt" / "model").exists()
    assert restore(records, second) > 0
    ledger = json.loads((second / "steps.json").read_text())
    assert f"hydra.run.dir={second / 'sft'}" in ledger["sft"]["command"]
    assert json.loads((second / "sft" / "results.json").read_text())["run_dir"] == str(second / "sft")
    assert Path(ledger["sft"]["log"]).is_file()  # the log the ledger names travelled with the records
    assert str(machine_one) not in (records / "logs" / "sft.log").read_text()
    (second / "eval_sft" / "results.json").write_text("{}")
    assert restore(records, second) == 0  # a folder with its own ledger is this machine's run: untouched
    assert (second / "eval_sft" / "results.json").read_text() == "{}"


def test_only_the_models_a_pending_step_needs_are_rebuilt_and_checked(two_machines):
    records, second = two_machines
    restore(records, second)
    ledger = Ledger(second / "steps.json")
    actions = {s.name: a for s, a in plan(chain(second), ledger, second, set(), set())}
    # The short run's model is not read by any command (dapt only took its lr): not retrained.
    assert actions == {"dapt_short": "skip", "dapt": "rebuild", "sft": "rebuild", "eval_sft": "skip", "merge": "run"}
    assert {s.name: a for s, a in plan(chain(second)[:4], ledger, second, set(), set())} == dict.fromkeys(
        ["dapt_short", "dapt", "sft", "eval_sft"], "skip"
    )  # nothing to run: no model is retrained
    only_merge = {s.name: a for s, a in plan(chain(second), ledger, second, {"merge"}, set())}
    assert only_merge == {
        "dapt_short": "ignore",
        "dapt": "rebuild",
        "sft": "rebuild",
        "eval_sft": "ignore",
        "merge": "run",
    }
    run_steps(chain(second), second, set(), set())
    ledger = json.loads((second / "steps.json").read_text())
    assert ledger["sft"]["rebuilt"]["deviation"] == 0.0 and ledger["merge"]["status"] == "completed"
    assert (second / "sft" / "model" / "model.safetensors").is_file()
    assert not (second / ".rebuild" / "sft" / "checkpoints").exists()  # the model is in place: no resume state kept
    assert (second / ".rebuild" / "sft" / "metrics.csv").is_file()
    assert not (second / "eval_sft" / "calls").exists()  # its records were kept, not remeasured
    assert "dapt" in (second / "logs" / "dapt.rebuild.log").read_text()


def test_a_rebuilt_model_that_differs_puts_what_was_built_on_it_out_of_date(two_machines, monkeypatch):
    records, second = two_machines
    restore(records, second)
    monkeypatch.setenv("FAKE_DRIFT", "0.01")
    with pytest.raises(ChipadaptError, match=r"rebuilt model of dapt differs .*: sft measured the old one"):
        run_steps(chain(second), second, set(), set())
    assert (second / "dapt" / "model").is_dir() and any((second / ".stale").iterdir())
    ledger = Ledger(second / "steps.json")
    actions = {s.name: a for s, a in plan(chain(second), ledger, second, set(), set())}
    assert actions == {"dapt_short": "skip", "dapt": "skip", "sft": "rerun", "eval_sft": "rerun", "merge": "run"}


@pytest.mark.parametrize(
    ("weights", "losses", "kept"),
    [
        ("3e-4", "0", True),  # beyond the weights' tolerance, every loss equal: float rounding, kept
        ("3e-4", "1e-3", False),  # the same drift from a run that trained otherwise
        ("0.01", "0", False),  # too far for rounding, whatever the losses say
    ],
)
def test_a_rebuild_that_drifted_by_rounding_is_kept_only_when_its_losses_match(
    two_machines, monkeypatch, weights, losses, kept
):
    records, second = two_machines
    restore(records, second)
    monkeypatch.setenv("FAKE_DRIFT", weights)
    monkeypatch.setenv("FAKE_LOSS_DRIFT", losses)
    if kept:
        run_steps(chain(second), second, set(), set())
    else:
        with pytest.raises(ChipadaptError, match=r"rebuilt model of dapt differs"):
            run_steps(chain(second), second, set(), set())
    ledger = json.loads((second / "steps.json").read_text())
    assert REBUILD_TOLERANCE < ledger["dapt"]["rebuilt"]["deviation"]
    assert ("kept" in ledger["dapt"]["rebuilt"]) == kept
    assert (ledger["sft"]["status"] == "completed") == kept  # otherwise it measured the old model: outdated
    assert (ledger.get("merge", {}).get("status") == "completed") == kept


def write_losses(path: Path, rows: list[tuple[int, float | str]]) -> Path:
    """A Lightning CSV log: lr rows without a loss between the loss rows, as the real logs have."""
    lines = ["epoch,lr-AdamW,step,train/loss"]
    for step, loss in rows:
        lines += [f",1e-4,{step},", f"0,,{step},{loss}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_losses_compare_on_the_runs_scale_by_step(tmp_path):
    # An SFT run whose late losses fall near 1e-3: a difference of 2e-6 there is 1e-3 of the loss
    # itself, but 1e-5 of the run's median loss, the scale the comparison uses.
    losses = [2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.002, 0.002]
    recorded = write_losses(tmp_path / "a.csv", list(enumerate(losses)))
    rounded = write_losses(tmp_path / "b.csv", [(k, v + 2e-6) for k, v in enumerate(losses)])
    assert loss_difference(recorded, rounded) <= LOSS_TOLERANCE
    other = write_losses(tmp_path / "c.csv", [(k, v * 1.01) for k, v in enumerate(losses)])
    assert loss_difference(recorded, other) > LOSS_TOLERANCE
    # A run resumed after an interruption logged step 3 twice: the later row counts, and it compares.
    resumed = write_losses(tmp_path / "d.csv", [*enumerate(losses[:4]), *list(enumerate(losses))[3:]])
    assert loss_difference(recorded, resumed) == 0.0
    # Steps missing, a row cut short by a kill, no log: not comparable (the strict tolerance applies).
    assert loss_difference(recorded, write_losses(tmp_path / "e.csv", list(enumerate(losses[:5])))) is None
    assert loss_difference(recorded, write_losses(tmp_path / "f.csv", [(0, "2.0e")])) is None
    assert loss_difference(tmp_path / "none.csv", rounded) is None


def test_a_model_the_report_reads_is_rebuilt_for_it_beside_its_restored_records(two_machines):
    records, second = two_machines
    restore(records, second)
    # As the tokenizer step: the report opens its model's files, and a record lives beside the weights.
    steps = [dataclasses.replace(s, report_reads_model=s.name == "dapt_short") for s in chain(second)][:4]
    (second / "dapt_short" / "model").mkdir()
    (second / "dapt_short" / "model" / "tokenizer_report.json").write_text('{"recorded": true}')
    assert [s.name for s in report_rebuilds(steps, second)] == ["dapt_short"]
    assert report_rebuilds(chain(second), second) == []  # no step says the report reads its model
    rebuild_for_report(steps, second)
    model = second / "dapt_short" / "model"
    assert (model / "model.safetensors").is_file()
    assert (model / "tokenizer_report.json").read_text() == '{"recorded": true}'  # the record stays
    ledger = json.loads((second / "steps.json").read_text())
    assert ledger["dapt_short"]["rebuilt"]["deviation"] == 0.0
    assert "rebuilt" not in ledger["dapt"] and not (second / "eval_sft" / "calls").exists()  # nothing else ran
    assert report_rebuilds(steps, second) == []  # built once


def test_an_interrupted_rebuild_resumes_in_its_own_folder(two_machines, monkeypatch):
    records, second = two_machines
    restore(records, second)
    (second / ".rebuild" / "dapt").mkdir(parents=True)
    (second / ".rebuild" / "dapt" / "calls").write_text("an earlier, interrupted try\n")
    run_steps(chain(second), second, set(), set())
    assert (second / ".rebuild" / "dapt" / "calls").read_text().count("\n") == 2


def test_a_missing_record_that_is_not_a_model_is_named_before_anything_runs(two_machines):
    records, second = two_machines
    (records / "sft" / "results.json").unlink()
    restore(records, second)
    steps = chain(second)
    steps[-1] = Step("merge", "evaluate.py", (f"scores={second}/sft/results.json",), "s")
    with pytest.raises(ChipadaptError, match=r"step merge reads .*sft/results.json, which step sft's records do not"):
        plan(steps, Ledger(second / "steps.json"), second, set(), set())


def test_records_of_another_run_folder_or_an_unfinished_step_are_not_taken_as_done(two_machines):
    records, second = two_machines
    with pytest.raises(ChipadaptError, match="resume_from: out=.* is inside the repository"):
        restore(records, records.parent.parent / "outputs" / "run")
    with pytest.raises(ChipadaptError, match="holds no steps.json"):
        restore(records / "dapt", second)
    with pytest.raises(
        ChipadaptError, match=r"step dapt.* ran in .*cache_two/run/dapt\w*, not under out=.*/other; use out="
    ):
        restore(records, second.parent / "other")
    ledger = json.loads((records / "steps.json").read_text())
    ledger["eval_sft"]["status"] = "interrupted"
    (records / "steps.json").write_text(json.dumps(ledger))
    restore(records, second)
    assert "eval_sft" not in json.loads((second / "steps.json").read_text()) and not (second / "eval_sft").exists()


def test_a_cache_behind_a_symlink_restores_steps_as_done(two_machines, tmp_path, monkeypatch):
    """The runner names `out` as the config gives it; restored commands must name it the same way."""
    records, _ = two_machines
    (tmp_path / "real_cache").mkdir()
    (tmp_path / "linked_cache").symlink_to(tmp_path / "real_cache")
    monkeypatch.setenv("CHIPADAPT_CACHE", str(tmp_path / "linked_cache"))
    second = tmp_path / "linked_cache" / "run"
    restore(records, second)
    assert f"hydra.run.dir={second / 'sft'}" in json.loads((second / "steps.json").read_text())["sft"]["command"]
    actions = {s.name: a for s, a in plan(chain(second)[:4], Ledger(second / "steps.json"), second, set(), set())}
    assert set(actions.values()) == {"skip"}


def test_records_written_through_a_symlinked_cache_name_no_machine_path(tmp_path, monkeypatch):
    (tmp_path / "real_cache").mkdir()
    (tmp_path / "linked_cache").symlink_to(tmp_path / "real_cache")
    monkeypatch.setenv("CHIPADAPT_CACHE", str(tmp_path / "linked_cache"))
    portable = PortablePaths(tmp_path / "linked_cache" / "run")
    text = f"{tmp_path}/linked_cache/run/sft and {tmp_path}/real_cache/models/x"
    assert portable(text) == "$CHIPADAPT_CACHE/run/sft and $CHIPADAPT_CACHE/models/x"
    elsewhere = f"/mnt/backup{tmp_path}/linked_cache/run"  # the same path inside another folder: not this cache
    assert portable(elsewhere) == elsewhere
