"""RTL benchmarks given as a description plus a self-checking testbench (RTLLM-style).

One JSONL record per task: {"task_id", "prompt": the description, "test": the testbench,
"ref"?: a reference solution (needed by references_only), "sources"?: [extra files],
"module"?: the design's name}.

- The design's module name is read from the testbench: the one module it instantiates that neither it
  nor the extra sources define (`module` settles it when a testbench instantiates several).
- `sources` are paths relative to the task file's folder. All of them are copied into the simulation
  folder (data for $readmemh, headers for `include); the .v/.sv ones are also compiled.
- The verdict is read from what the simulation prints, with two configurable regular expressions:
  a `fail_pattern` match is a failure unless it captures a count (any group) that is zero ("Errors: 0",
  "0 mismatches" are clean reports); a `pass_pattern` match or a clean report is pass evidence. A task
  passes when nothing failed, there is pass evidence and the simulator exited cleanly; output with
  neither is "no verdict" (stage `simulate`), like a testbench that crashed before reporting.
"""

import re
import tempfile
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.verilog.hdl_scan import defined_modules, instantiated_modules
from chipadapt.eval.verilog.simulate import SimResult, compile_and_run
from chipadapt.io.jsonl import jsonl_records, unique_field

COMPILED_SUFFIXES = (".v", ".sv")
CANDIDATE_FILE, TESTBENCH_FILE = "_candidate.sv", "_testbench.sv"


def _compile(pattern: str, key: str) -> re.Pattern:
    try:
        return re.compile(pattern, re.M)
    except re.error as err:
        raise ChipadaptError(f"eval.verilog.shape.{key}: {pattern!r} is not a regular expression ({err})") from None


class SelfCheckingShape:
    def __init__(self, pass_pattern: str, fail_pattern: str):
        self.pass_re = _compile(pass_pattern, "pass_pattern")
        self.fail_re = _compile(fail_pattern, "fail_pattern")

    # --- reading tasks -------------------------------------------------------------------------
    def read(self, path: str | Path) -> list[dict]:
        path = Path(path)
        tasks = []
        for lineno, record in unique_field(
            jsonl_records(path, missing=f"eval.verilog.path: {path} does not exist"), path, "task_id"
        ):
            where = f"{path}:{lineno}"
            missing = [k for k in ("task_id", "prompt", "test") if not isinstance(record.get(k), str)]
            if missing:
                raise ChipadaptError(
                    f"{where}: missing string field(s) {missing} "
                    "(a self-checking task is {task_id, prompt, test, ref?, sources?, module?})"
                )
            files = self._source_files(record.get("sources") or [], path.parent, where)
            compiled = "".join(
                text.decode(errors="replace") for name, text in files.items() if name.endswith(COMPILED_SUFFIXES)
            )
            module = record.get("module") or self._design_module(record["test"], compiled, where)
            tops = [m for m in defined_modules(record["test"]) if m not in instantiated_modules(record["test"])]
            tasks.append({**record, "module": module, "testbench_tops": tops, "source_files": files})
        return tasks

    @staticmethod
    def _source_files(sources: list, folder: Path, where: str) -> dict[str, bytes]:
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise ChipadaptError(f"{where}: sources must be a list of file paths (relative to {folder})")
        files = {}
        for source in sources:
            file = folder / source
            if not file.is_file():
                raise ChipadaptError(f"{where}: source file {source} does not exist (looked for {file})")
            if file.name in files or file.name in (CANDIDATE_FILE, TESTBENCH_FILE):
                raise ChipadaptError(
                    f"{where}: two source files are named {file.name}; they share one simulation folder"
                )
            files[file.name] = file.read_bytes()
        return files

    @staticmethod
    def _design_module(testbench: str, sources: str, where: str) -> str:
        defined = set(defined_modules(testbench)) | set(defined_modules(sources))
        undefined = [m for m in instantiated_modules(testbench) if m not in defined]
        if len(undefined) != 1:
            found = (
                f"instantiates {undefined} without defining them"
                if undefined
                else "instantiates no module it does not define"
            )
            raise ChipadaptError(f'{where}: the testbench {found}; name the design with "module"')
        return undefined[0]

    # --- what VerilogTask asks of a benchmark shape ------------------------------------------------
    def module_name(self, task: dict) -> str:
        return task["module"]

    def reference(self, task: dict) -> str:
        if not isinstance(task.get("ref"), str):
            raise ChipadaptError(
                f'eval.verilog.references_only: task {task["task_id"]} has no reference solution ("ref")'
            )
        return task["ref"]

    def simulate(self, task: dict, candidate: str, timeout_s: float) -> SimResult:
        with tempfile.TemporaryDirectory(prefix="chipadapt-vlog-") as tmp:
            work = Path(tmp)
            for name, data in task["source_files"].items():
                (work / name).write_bytes(data)
            (work / TESTBENCH_FILE).write_text(task["test"])
            (work / CANDIDATE_FILE).write_text(candidate)
            compiled = [TESTBENCH_FILE, CANDIDATE_FILE] + [
                n for n in task["source_files"] if n.endswith(COMPILED_SUFFIXES)
            ]
            ran = compile_and_run(work, compiled, task["testbench_tops"], timeout_s)
        if isinstance(ran, SimResult):
            return ran
        return self.verdict(ran.stdout + ran.stderr, ran.returncode)

    def verdict(self, output: str, returncode: int = 0) -> SimResult:
        failures, clean_reports = [], []
        for match in self.fail_re.finditer(output):
            counts = [int(g) for g in match.groups() if g is not None and g.isdigit()]
            (clean_reports if counts and not any(counts) else failures).append(match.group(0))
        passes = [m.group(0) for m in self.pass_re.finditer(output)]
        if failures:
            return SimResult(False, "ok", f"failed: {failures[0]!r} ({len(failures)} failure report(s))")
        if not (passes or clean_reports):
            return SimResult(False, "simulate", "no verdict in the output: " + output[-400:])
        if returncode != 0:
            return SimResult(False, "simulate", f"simulator exited with {returncode}: " + output[-400:])
        return SimResult(True, "ok", f"passed: {(passes or clean_reports)[-1]!r}")
