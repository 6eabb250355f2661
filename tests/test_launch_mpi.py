"""mpirun: Lightning reads the rank of an MPI launch through mpi4py (MPIEnvironment, after torchrun, srun and LSF),
and io/launch_ranks read none of it, so under `mpirun -np 4 python train.py` every process took itself for a lone
rank 0: each read the weights under load_on_rank0, took the folder's lock and wrote its manifest. Where mpi4py is
missing Lightning runs each such process alone, writing the same folder: every one is refused in one line (rank 0
too: mpirun ends the job once the others exit with an error, and a rank 0 let through was killed half-started)."""

import sys
from types import SimpleNamespace

import pytest
from helpers.faults import assert_user_error, run_entry
from helpers.launch_env import launched_with
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.plugins.environments import mpi as lightning_mpi
from lightning_utilities.core.imports import RequirementCache

from chipadapt.errors import ChipadaptError, exit_on_user_error
from chipadapt.io import launch_ranks
from chipadapt.io.lock import is_secondary_rank
from chipadapt.manifest import REFUSAL, record_refusal
from chipadapt.scaleout.rank0_load import launched_as_global_zero

# An mpi4py whose COMM_WORLD is what the launcher started (or, `alone`, an MPI library other than the launcher's,
# which sees each process as a singleton).
FAKE_MPI = """
import os

class _World:
    def Get_rank(self):
        return 0 if {alone} else int(os.environ.get("OMPI_COMM_WORLD_RANK") or os.environ.get("PMI_RANK") or 0)

    def Get_size(self):
        return 1 if {alone} else int(os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE") or 1)

COMM_WORLD = _World()
"""


@pytest.fixture
def launched_as(monkeypatch):
    def launch(**variables: str) -> None:
        launched_with(monkeypatch, **variables)
        launch_ranks._mpi_world.cache_clear()  # COMM_WORLD as this launch's mpi4py (or none) gives it

    yield launch
    launch_ranks._mpi_world.cache_clear()


@pytest.fixture
def mpi4py_installed(tmp_path, monkeypatch):
    """A stand-in mpi4py on sys.path, seen by Lightning's own check (a fresh RequirementCache: the module's is
    evaluated once per process)."""

    def install(alone: bool = False) -> None:
        package = tmp_path / "mpi4py"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "MPI.py").write_text(FAKE_MPI.format(alone=alone))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(lightning_mpi, "_MPI4PY_AVAILABLE", RequirementCache("mpi4py"))

    yield install
    for name in ("mpi4py.MPI", "mpi4py"):  # imported by the test: gone with its sys.path entry
        sys.modules.pop(name, None)


def lightning_rank() -> int | None:
    """The global rank Lightning's MPIEnvironment gives, None where it would not be chosen."""
    if not lightning_mpi.MPIEnvironment.detect():
        return None
    return lightning_mpi.MPIEnvironment().global_rank()


OPEN_MPI = {"OMPI_COMM_WORLD_SIZE": "4"}
HYDRA = {"PMI_SIZE": "4"}


@pytest.mark.parametrize(
    "variables, zero",
    [
        ({**OPEN_MPI, "OMPI_COMM_WORLD_RANK": "0"}, True),
        ({**OPEN_MPI, "OMPI_COMM_WORLD_RANK": "2"}, False),
        ({**HYDRA, "PMI_RANK": "0"}, True),
        ({**HYDRA, "PMI_RANK": "3"}, False),
    ],
)
def test_mpirun_ranks_agree_with_lightnings_mpi_environment(launched_as, mpi4py_installed, variables, zero):
    launched_as(**variables)
    mpi4py_installed()
    rank = lightning_rank()
    assert rank is not None
    assert launched_as_global_zero() is zero is (rank == 0)
    assert is_secondary_rank() is not zero
    assert launch_ranks.rank_label() == str(rank)


@pytest.mark.parametrize(
    "variables, zero, label",
    [
        # srun --mpi=pmi2 sets PMI_* too: SLURMEnvironment comes first in Lightning's order
        (
            {"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_JOB_NAME": "dapt", "PMI_RANK": "2", "PMI_SIZE": "4"},
            False,
            "2",
        ),
        # torchrun started by mpirun, one per node: TorchElasticEnvironment comes first
        (
            {
                "TORCHELASTIC_RUN_ID": "r",
                "WORLD_SIZE": "8",
                "RANK": "0",
                "OMPI_COMM_WORLD_SIZE": "2",
                "OMPI_COMM_WORLD_RANK": "1",
            },
            True,
            "0",
        ),
        # mpirun -np 1: a lone process
        ({"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"}, True, "0"),
    ],
)
def test_launchers_before_mpi_in_lightnings_order_need_no_mpi4py(launched_as, variables, zero, label):
    launched_as(**variables)
    assert launched_as_global_zero() is zero
    assert launch_ranks.rank_label() == label


@pytest.mark.parametrize(
    "variables",
    [
        {**OPEN_MPI, "OMPI_COMM_WORLD_RANK": "1"},
        {**OPEN_MPI, "OMPI_COMM_WORLD_RANK": "0"},
        {**HYDRA, "PMI_RANK": "3"},
        {**HYDRA, "PMI_RANK": "0"},
        {"PMIX_RANK": "1"},
    ],
)
def test_mpirun_without_mpi4py_is_refused_in_one_line(launched_as, capsys, variables):
    launched_as(**variables)
    assert launch_ranks._mpi_world() is None  # this project's environment has no mpi4py
    assert lightning_rank() is None  # so Lightning would run each process alone
    with pytest.raises(SystemExit) as stopped:
        exit_on_user_error(launched_as_global_zero)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chipadapt: error: an MPI launcher started")
    assert "mpi4py is not installed" in err and "torchrun or srun" in err
    for asked in (launch_ranks.several_processes_launched, is_secondary_rank, launch_ranks.rank_label):
        with pytest.raises(ChipadaptError):
            asked()


def test_a_lone_process_inside_an_mpi_job_is_told_which_variable_to_unset(launched_as, capsys):
    launched_as(**OPEN_MPI, OMPI_COMM_WORLD_RANK="0")
    with pytest.raises(SystemExit):
        exit_on_user_error(launch_ranks.check_launch)
    assert "unset OMPI_COMM_WORLD_SIZE" in capsys.readouterr().err


def test_a_refused_mpi_rank_notes_no_refusal_in_the_folder_rank_0_runs(launched_as, tmp_path, monkeypatch):
    """cli.run_job notes a sweep job's refusal (manifest.record_refusal) after the refusal's line: it asked the
    rank again and raised the refusal a second time, three tracebacks and exit 1 (the sweep ended, no note)."""
    folder = tmp_path / "sweep" / "0"
    folder.mkdir(parents=True)
    hydra = SimpleNamespace(runtime=SimpleNamespace(output_dir=str(folder)), mode=RunMode.MULTIRUN)
    hydra.overrides = SimpleNamespace(task=["optim.lr=0.1"])
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: hydra))
    launched_as(**OPEN_MPI, OMPI_COMM_WORLD_RANK="1")
    record_refusal()
    assert not (folder / REFUSAL).exists()
    launched_as()  # a lone process: its refusal is its folder's
    record_refusal()
    assert (folder / REFUSAL).is_file()


def test_train_on_an_mpi_rank_above_0_without_mpi4py_is_refused_in_one_line(launched_as, tmp_path):
    """Refused before any model is loaded; before: exit 1, the line followed by three chained tracebacks."""
    launched_as(**OPEN_MPI, OMPI_COMM_WORLD_RANK="1")  # the environment the process inherits
    proc = run_entry(
        "train.py", ["model=tiny", "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'run'}"], timeout=240
    )
    assert_user_error(proc, "an MPI launcher started 4 processes", "OMPI_COMM_WORLD_RANK=1", "mpi4py is not installed")
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_mpirun_with_an_mpi4py_of_another_mpi_is_refused(launched_as, mpi4py_installed):
    launched_as(**OPEN_MPI, OMPI_COMM_WORLD_RANK="3")
    mpi4py_installed(alone=True)
    assert lightning_rank() is None
    with pytest.raises(ChipadaptError, match="mpi4py's MPI sees this process alone"):
        launched_as_global_zero()


def test_a_lone_process_never_imports_mpi4py(launched_as, mpi4py_installed):
    """Importing mpi4py initialises MPI: it is asked only where a launcher says it started several."""
    launched_as()
    mpi4py_installed()
    assert launched_as_global_zero() is True
    assert "mpi4py.MPI" not in sys.modules


def test_the_console_module_imports_under_a_refused_mpi_launch(launched_as):
    """chipadapt.report builds its console on import with first_process(), which asked the rank: the refusal was a
    traceback at import, before cli.run_job could say it in one line."""
    from chipadapt.report import first_process

    launched_as(**HYDRA, PMI_RANK="2")
    assert first_process() is True
