"""Jobs of one sweep never write one output (the trial: `merge.py -m merge.lam=0.3,0.7 overwrite=true
output=DIR` exited 0 with DIR holding the lam 0.7 model while job 0's manifest still recorded lam 0.3
at DIR; without overwrite=true job 1 failed only after its merge). Two jobs whose `output` resolves to
one path are refused before the first runs, naming both and the way out; an output made to differ per
job (`output=DIR_${merge.lam}`) passes and resolves per job."""

import pytest
from conftest import CONF
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from chipadapt import run_folder_guard
from chipadapt.run_folder_guard import RunFolderGuard
from chipadapt.sweep_job_folders import job_outputs

MERGE = ["merge=linear", "merge.lam=0.3,0.7", "models.chip=chip", "models.instruct=instruct"]


def merge_sweep_config(overrides: list[str]):
    """merge.py's config as a `-m` command line composes it (Hydra's own node included)."""
    import chipadapt  # noqa: F401  (resolvers)

    return GlobalHydra.instance().hydra.compose_config(
        "merge", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False
    )


def outputs_of(tmp_path, extra: list[str]):
    sweep = tmp_path / "sweep"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return job_outputs(merge_sweep_config([*MERGE, f"hydra.sweep.dir={sweep}", *extra]), sweep, "output")


def test_each_jobs_output_is_resolved_in_that_jobs_own_config(tmp_path):
    fixed = outputs_of(tmp_path, [f"output={tmp_path / 'merged'}"])
    assert [path for _, path in fixed] == [tmp_path / "merged"] * 2
    per_lam = outputs_of(tmp_path, [f"output={tmp_path}/merged_${{merge.lam}}"])
    assert [path for _, path in per_lam] == [tmp_path / "merged_0.3", tmp_path / "merged_0.7"]
    per_num = outputs_of(tmp_path, [f"output={tmp_path}/m${{hydra:job.num}}"])
    assert [path.name for _, path in per_num] == ["m0", "m1"]
    # The default, `${hydra:runtime.output_dir}/model`: in each job's own folder, nothing to compose.
    assert outputs_of(tmp_path, []) == []


def refusal(tmp_path, capsys, monkeypatch, extra: list[str]) -> str | None:
    """The guard's one line at the sweep's start, or None where the sweep goes on."""
    monkeypatch.setattr(run_folder_guard, "_SWEEP", {})
    monkeypatch.setattr(run_folder_guard, "_JOBS", {})
    sweep = tmp_path / "sweep"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = merge_sweep_config([*MERGE, f"hydra.sweep.dir={sweep}", *extra])
        try:
            RunFolderGuard().on_multirun_start(config, config_name="merge")
        except SystemExit as stop:
            assert stop.code == 2
            return capsys.readouterr().err.strip()
    return None


def test_a_sweep_whose_jobs_share_an_output_is_refused_before_any_job(tmp_path, capsys, monkeypatch):
    line = refusal(tmp_path, capsys, monkeypatch, ["overwrite=true", f"output={tmp_path / 'sw2'}"])
    assert line is not None and len(line.splitlines()) == 1
    assert line.startswith("chipadapt: error: output: jobs #0 (merge.lam=0.3) and #1 (merge.lam=0.7)")
    assert f"{tmp_path / 'sw2'}" in line
    assert f"'output={tmp_path / 'sw2'}_${{merge.lam}}'" in line  # a way out that the user can paste
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("output", [None, "{tmp}/merged_${{merge.lam}}"])
def test_outputs_that_differ_per_job_pass(tmp_path, capsys, monkeypatch, output):
    extra = [f"output={output.format(tmp=tmp_path)}"] if output else []
    assert refusal(tmp_path, capsys, monkeypatch, extra) is None


def test_a_search_that_draws_its_trials_is_refused_one_plain_output(tmp_path, capsys, monkeypatch):
    search = ["hparams_search=merge_lam_optuna", "models.chip=chip", "models.instruct=instruct"]
    sweep = tmp_path / "sweep"
    for output, refused in ((f"{tmp_path}/m", True), (f"{tmp_path}/m${{hydra:job.num}}", False)):
        monkeypatch.setattr(run_folder_guard, "_SWEEP", {})
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            config = merge_sweep_config([*search, f"hydra.sweep.dir={sweep}", f"output={output}"])
            try:
                RunFolderGuard().on_multirun_start(config, config_name="merge")
                line = None
            except SystemExit:
                line = capsys.readouterr().err
        assert (line is not None) == refused, line
        if refused:
            assert "output: every trial of this search would write into" in line


def test_a_file_that_every_job_of_an_evaluation_sweep_would_write_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run_folder_guard, "_SWEEP", {})
    monkeypatch.setattr(run_folder_guard, "_JOBS", {})
    misses = tmp_path / "misses.md"
    overrides = ["model=tiny", "eval=[retrieval]", f"eval.retrieval.misses_file={misses}", "eval.retrieval.limit=2,3"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        import chipadapt  # noqa: F401  (resolvers)

        config = GlobalHydra.instance().hydra.compose_config(
            "evaluate", [*overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}"], run_mode=RunMode.MULTIRUN
        )
        with pytest.raises(SystemExit):
            RunFolderGuard().on_multirun_start(config, config_name="evaluate")
    line = capsys.readouterr().err
    assert line.startswith("chipadapt: error: eval.retrieval.misses_file: jobs #0 (eval.retrieval.limit=2) and #1")
    assert f"'eval.retrieval.misses_file={tmp_path}/misses_${{eval.retrieval.limit}}.md'" in line
