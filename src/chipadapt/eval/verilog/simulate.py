"""Compile a candidate `TopModule` with the task's reference and self-checking testbench; run it.

The testbench (VerilogEval v2) instantiates RefModule and TopModule, compares their outputs every
clock edge and prints `Mismatches: N in M samples` at the end; a candidate passes when N is 0.
`compile_and_run` is the one iverilog/vvp invocation, shared with the self-checking shape.
"""

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chipadapt.errors import ChipadaptError

MISMATCHES = re.compile(r"Mismatches:\s*(\d+)\s+in\s+(\d+)\s+samples")


@dataclass(frozen=True)
class SimResult:
    passed: bool
    stage: str  # compile | simulate | timeout | ok
    detail: str = ""


def require_iverilog() -> None:
    if not (shutil.which("iverilog") and shutil.which("vvp")):
        raise ChipadaptError("eval.verilog: Icarus Verilog is not installed (apt-get install -y iverilog)")


@dataclass(frozen=True)
class Ran:
    stdout: str
    stderr: str
    returncode: int


def compile_and_run(work: Path, files: list[str], tops: list[str], timeout_s: float) -> SimResult | Ran:
    """Compile `files` (in `work`, which is also the simulation's working folder, so `include and
    $readmemh find files there) with `tops` as the root modules, and simulate. A SimResult when it
    stopped short (compile error or timeout), else what the simulation printed."""
    roots = [arg for top in tops for arg in ("-s", top)]
    compile_cmd = ["iverilog", "-Wall", "-Winfloop", "-Wno-timescale", "-g2012", "-I", ".", *roots, "-o", "sim", *files]
    try:
        built = subprocess.run(compile_cmd, cwd=work, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return SimResult(False, "timeout", "compile")
    if built.returncode != 0:
        return SimResult(False, "compile", (built.stderr or built.stdout)[-500:])
    try:
        ran = subprocess.run(["vvp", "-n", "sim"], cwd=work, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return SimResult(False, "timeout", "simulate")
    return Ran(ran.stdout, ran.stderr, ran.returncode)


def simulate(candidate: str, reference: str, testbench: str, timeout_s: float) -> SimResult:
    with tempfile.TemporaryDirectory(prefix="chipadapt-vlog-") as tmp:
        work = Path(tmp)
        (work / "test.sv").write_text(testbench)
        (work / "ref.sv").write_text(reference)
        (work / "top.sv").write_text(candidate)
        ran = compile_and_run(work, ["test.sv", "ref.sv", "top.sv"], ["tb"], timeout_s)
        if isinstance(ran, SimResult):
            return ran
        found = MISMATCHES.findall(ran.stdout)
        if not found:
            return SimResult(False, "simulate", (ran.stdout + ran.stderr)[-500:])
        errors, samples = map(int, found[-1])
        return SimResult(errors == 0 and samples > 0, "ok", f"{errors} mismatches in {samples} samples")
