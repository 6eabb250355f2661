"""Compile a candidate `TopModule` with the task's reference and self-checking testbench; run it.

The testbench (VerilogEval v2) instantiates RefModule and TopModule, compares their outputs every
clock edge and prints `Mismatches: N in M samples` at the end; a candidate passes when N is 0.
`compile_and_run` is the one iverilog/vvp invocation, shared with the self-checking shape.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from chipadapt.errors import ChipadaptError

MISMATCHES = re.compile(r"Mismatches:\s*(\d+)\s+in\s+(\d+)\s+samples")


@dataclass(frozen=True)
class SimResult:
    passed: bool
    stage: str  # compile | simulate | timeout | refused | ok
    detail: str = ""


def require_iverilog() -> None:
    if not (shutil.which("iverilog") and shutil.which("vvp")):
        raise ChipadaptError("eval.verilog: Icarus Verilog is not installed (apt-get install -y iverilog)")


# What a simulation may print before it is stopped: the verdict is read from all of the output, and a
# hang that keeps printing grew to 1.2 GB in memory within a 30 s limit.
MAX_OUTPUT_BYTES = 8 << 20
TAIL_CHARS = 600  # of the output, in a detail
READER_GRACE_S = 5  # how long the output is read on after the run ended or was killed


@dataclass(frozen=True)
class Ran:
    output: str  # stdout and stderr as printed, interleaved
    returncode: int


def tail(text: str, chars: int = TAIL_CHARS) -> str:
    """The last lines of `text` within `chars`, whole lines where they fit."""
    if len(text) <= chars:
        return text
    cut = text[-chars:]
    return "..." + (cut.split("\n", 1)[1] if "\n" in cut[:-1] else cut)


def _run_capped(cmd: list[str], work: Path, timeout_s: float) -> tuple[str, int | None, bool]:
    """Run `cmd` keeping at most MAX_OUTPUT_BYTES of what it prints; it is killed at the timeout or when
    it prints more. (output, return code or None after a timeout, whether the output was cut)."""
    # Its own process group: iverilog runs its compiler (ivl) as a child that holds the output pipe, so
    # killing iverilog alone left ivl running on and the reader waiting for it past the timeout.
    # Its temporary files in `work` (a temporary folder removed after the task): killed at the timeout, iverilog
    # cannot remove its /tmp/ivrlg* files itself.
    env = {**os.environ, "TMP": str(work), "TMPDIR": str(work)}
    proc = subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    kept, cut = bytearray(), threading.Event()

    def kill_group():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # the group is already gone
            pass

    def read():
        while chunk := proc.stdout.read1(1 << 16):
            if not cut.is_set():
                kept.extend(chunk[: MAX_OUTPUT_BYTES - len(kept)])
                if len(kept) >= MAX_OUTPUT_BYTES:
                    cut.set()
                    kill_group()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        returncode = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group()
        proc.wait()
        returncode = None
    # A child that left the group could still hold the pipe: wait for the reader a bounded time.
    reader.join(READER_GRACE_S)
    if not reader.is_alive():
        proc.stdout.close()
    return bytes(kept).decode(errors="replace"), returncode, cut.is_set()


def compile_and_run(work: Path, files: list[str], tops: list[str], timeout_s: float) -> SimResult | Ran:
    """Compile `files` (in `work`, which is also the simulation's working folder, so `include and
    $readmemh find files there) with `tops` as the root modules, and simulate. A SimResult when it
    stopped short (compile error, timeout, output over MAX_OUTPUT_BYTES), else what the simulation printed."""
    roots = [arg for top in tops for arg in ("-s", top)]
    compile_cmd = ["iverilog", "-Wall", "-Winfloop", "-Wno-timescale", "-g2012", "-I", ".", *roots, "-o", "sim", *files]
    for stage, cmd in (("compile", compile_cmd), ("simulate", ["vvp", "-n", "sim"])):
        output, returncode, cut = _run_capped(cmd, work, timeout_s)
        if cut:
            return SimResult(
                False,
                stage,
                f"{stage}: printed more than {MAX_OUTPUT_BYTES >> 20} MB, stopped there (output cut; the verdict "
                f"needs all of it); last output: {tail(output)}",
            )
        if returncode is None:
            return SimResult(
                False, "timeout", f"{stage}: still running after {timeout_s:g} s; last output: {tail(output)}"
            )
        if stage == "compile" and returncode != 0:
            return SimResult(False, "compile", output[-500:])
    return Ran(output, returncode)


def simulate(candidate: str, reference: str, testbench: str, timeout_s: float) -> SimResult:
    with tempfile.TemporaryDirectory(prefix="chipadapt-vlog-") as tmp:
        work = Path(tmp)
        (work / "test.sv").write_text(testbench)
        (work / "ref.sv").write_text(reference)
        (work / "top.sv").write_text(candidate)
        ran = compile_and_run(work, ["test.sv", "ref.sv", "top.sv"], ["tb"], timeout_s)
        if isinstance(ran, SimResult):
            return ran
        found = MISMATCHES.findall(ran.output)
        if not found:
            return SimResult(False, "simulate", ran.output[-500:])
        errors, samples = map(int, found[-1])
        return SimResult(errors == 0 and samples > 0, "ok", f"{errors} mismatches in {samples} samples")
