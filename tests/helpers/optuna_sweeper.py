"""A StudySweeper run without training, for the tests of chipadapt's Optuna sweeper: Hydra's basic launcher
with jobs that make their folder as a job does and return a value from their params, and the trials a
killed or refusing job leaves behind."""

from pathlib import Path
from types import SimpleNamespace

import optuna
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from omegaconf import OmegaConf
from optuna.distributions import UniformDistribution

from chipadapt.io.lock import run_folder_lock
from chipadapt.optuna_results import FOLDER
from chipadapt.optuna_search import StudySweeper

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"optim.lr": UniformDistribution(0.0, 1.0)}


class FakeLauncher(BasicLauncher):
    """Hydra's basic launcher (it runs the jobs in the search process), running no training: records the
    job index each trial was launched at, makes its folder as a job does
    (under its run lock, with a manifest) and returns a value from its params. `during(index)` runs while
    the job holds its folder (another process at work meanwhile); it may raise, as a refusing job exits."""

    def __init__(self, sweep_dir: Path, during=None):
        super().__init__()
        self.sweep_dir, self.during = sweep_dir, during
        self.launched: list[tuple[int, tuple]] = []

    def launch(self, overrides, initial_job_idx):
        returns = []
        for index, override in enumerate(overrides, start=initial_job_idx):
            self.launched.append((index, override))
            with run_folder_lock(self.sweep_dir / str(index)):
                if self.during:
                    self.during(index)
                (self.sweep_dir / str(index) / "manifest.json").write_text("{}")
            x = float(dict(line.split("=", 1) for line in override)["optim.lr"])
            returns.append(SimpleNamespace(return_value=(x - 0.3) ** 2))
        return returns


def sweeper(
    tmp_path: Path,
    storage: str | None,
    n_trials: int,
    fixed: str = "trainer.max_steps=2",
    sweep: str = "sweep",
    name: str = "dapt",
    n_jobs: int = 1,
) -> StudySweeper:
    sampler = optuna.samplers.TPESampler(seed=1234, n_startup_trials=5)
    search = StudySweeper(sampler, "minimize", storage, name, n_trials, n_jobs, None, None, OmegaConf.create({}))
    search.config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path / sweep)}, "sweeper": {"sampler": {"seed": 1234}}}}
    )
    search.launcher = FakeLauncher(tmp_path / sweep)
    search.arguments = ["optim.lr=interval(0,1)", fixed]
    return search


def states(storage: str) -> list[str]:
    return [t.state.name for t in optuna.load_study(study_name="dapt", storage=storage).trials]


def killed_trial(tmp_path: Path, storage: str, jobs_here: bool) -> optuna.trial.Trial:
    """A trial a killed invocation was running: its job took its folder's lock, and died (or, under SLURM,
    was requeued: its lock is free as well); the search process's claim is released."""
    from chipadapt.optuna_resume import CLAIM, JOBS_HERE

    study = optuna.load_study(study_name="dapt", storage=storage)
    killed = study.ask()
    killed.suggest_float("optim.lr", 0.0, 1.0)
    killed.set_user_attr(FOLDER, str(tmp_path / "sweep" / "2"))
    killed.set_user_attr(CLAIM, str(tmp_path / "sweep" / ".optuna_searches" / "dead"))
    killed.set_user_attr(JOBS_HERE, jobs_here)
    for folder in (tmp_path / "sweep" / "2", tmp_path / "sweep" / ".optuna_searches" / "dead"):
        with run_folder_lock(folder):
            pass
    return killed


def basic_launcher_batch(
    search: StudySweeper, refused: set[int], diverged: frozenset[int] = frozenset(), folder_name=str
):
    """Hydra's basic launcher runs a batch's jobs one after the other in this process: a job that refuses
    its input (exit 2) ends the launch, and the values of the jobs before it are never returned."""
    import datetime as dt
    import json

    def launch(overrides, initial_job_idx):
        for index, override in enumerate(overrides, start=initial_job_idx):
            if index in refused:
                raise SystemExit(2)
            folder = search.launcher.sweep_dir / folder_name(index)
            with run_folder_lock(folder):
                x = float(dict(line.split("=", 1) for line in override)["optim.lr"])
                done = {"status": "completed", "error": None, "metrics": {"after": {"domain": {"bpb": x}}}}
                if index in diverged:
                    done = {"status": "failed", "error": "TrainingDiverged: training diverged: loss is nan"}
                started = dt.datetime.now().isoformat(timespec="seconds")
                manifest = {"kind": "train", "overrides": list(override), "started": started, "config": {}, **done}
                (folder / "manifest.json").write_text(json.dumps(manifest))
        raise AssertionError("a batch with a refused job ends in SystemExit")

    search.launcher.launch = launch
