"""Compile a candidate `TopModule` with the task's reference and self-checking testbench; run it.

The testbench (VerilogEval v2) instantiates RefModule and TopModule, compares their outputs every
clock edge and prints `Mismatches: N in M samples` at the end; a candidate passes when N is 0.
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
    stage: str          # compile | simulate | timeout | ok
    detail: str = ""


def require_iverilog() -> None:
    if not (shutil.which("iverilog") and shutil.which("vvp")):
        raise ChipadaptError("eval.verilog: Icarus Verilog is not installed (apt-get install -y iverilog)")


def simulate(candidate: str, reference: str, testbench: str, timeout_s: float) -> SimResult:
    with tempfile.TemporaryDirectory(prefix="chipadapt-vlog-") as tmp:
        work = Path(tmp)
        (work / "test.sv").write_text(testbench)
        (work / "ref.sv").write_text(reference)
        (work / "top.sv").write_text(candidate)
        compile_cmd = ["iverilog", "-Wall", "-Winfloop", "-Wno-timescale", "-g2012", "-s", "tb", "-o", "sim", "test.sv", "ref.sv", "top.sv"]
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
        found = MISMATCHES.findall(ran.stdout)
        if not found:
            return SimResult(False, "simulate", (ran.stdout + ran.stderr)[-500:])
        errors, samples = map(int, found[-1])
        return SimResult(errors == 0 and samples > 0, "ok", f"{errors} mismatches in {samples} samples")
