"""What every fault case checks: the exit status, exactly one `chipadapt: error:` line and no
traceback on stderr, and that the inputs are byte-identical afterwards."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_entry(script: str, args: list[str], timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """One entry point in a subprocess: `train.py`, `merge.py`, ..., or `-m chipadapt.data.curate`."""
    command = [sys.executable, *(script.split() if script.startswith("-m") else [str(ROOT / script)]), *map(str, args)]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)


def snapshot(*paths: Path) -> dict[str, str]:
    """sha256 of every file under the given files and folders."""
    digests = {}
    for path in paths:
        path = Path(path)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            digests[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str, before: dict | None = None) -> str:
    """Status 2, one error line (containing each fragment), no traceback; inputs unchanged."""
    stderr = proc.stderr
    lines = [line for line in stderr.splitlines() if line.startswith("chipadapt: error:")]
    assert proc.returncode == 2, f"exit {proc.returncode}\n{stderr[-3000:]}"
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    if before is not None:
        assert_unchanged(before)
    return lines[0]


def assert_unchanged(before: dict[str, str]) -> None:
    after = {path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in before if Path(path).is_file()}
    assert after == before, "an input changed or disappeared"
