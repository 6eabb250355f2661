"""RTL benchmarks given as a description plus a self-checking testbench (RTLLM-style).

One JSONL record per task: {"task_id", "prompt": the description, "test": the testbench,
"ref"?: a reference solution (needed by references_only), "sources"?: [extra files],
"module"?: the design's name}.

- The design's module name is read from the testbench: the one module it instantiates that neither it
  nor the extra sources define (`module` settles it when a testbench instantiates several).
- `sources` are paths relative to the task file's folder. All of them are copied into the simulation
  folder (data for $readmemh, headers for `include); the .v/.sv ones are also compiled.
- The verdict is read from what the simulation prints (at most simulate.MAX_OUTPUT_BYTES of it), with two
  configurable regular expressions, each match one report:
  - a `fail_pattern` match is a failure report, unless it captures a number (any group) and the last
    number it captures is zero: then it is a clean report ("Errors: 0", "0 mismatches", "0 failed",
    "PASS: 10 FAIL: 0"; the last is the count after the word where the match also holds one before it);
  - a `pass_pattern` match is pass evidence, unless it captures numbers: the first is how many passed,
    the second (if any) how many there were; a zero count or one short of the total is a failure
    report ("Passed 0 of 8 checks", "passed: 0/8", "7/8 tests passed").
  A task passes when there is no failure report, some pass evidence or a clean report, and the
  simulator exited 0; output with neither report is "no verdict" (stage `simulate`), like a testbench
  that crashed before reporting. The defaults (conf/verilog_shape/self_checking.yaml) say which words count.
- A candidate whose design (or a helper it instantiates) prints a verdict line of its own
  (`$display("TEST PASSED")`, `$write("Errors: 0")`, `$info("TEST PASSED")`: pass evidence or a clean
  report with nothing around it but a verdict's frame, VERDICT_FRAME), or holds one as any string literal
  (`m = "TEST PASSED"; $display("%0s", m)`), is refused (stage `refused`) without simulating it: its print
  would be taken for the testbench's verdict. A heuristic read of the candidate's text, not a sandbox: a
  verdict built at run time ($sformatf from pieces, a file) is not seen.
"""

import logging
import math
import re
import tempfile
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.verilog.extract import modules, needed_helpers
from chipadapt.eval.verilog.hdl_scan import (
    defined_modules,
    instantiated_modules,
    printed_strings,
    string_literals,
)
from chipadapt.eval.verilog.simulate import SimResult, compile_and_run, tail
from chipadapt.io.jsonl import jsonl_records, unique_field

log = logging.getLogger(__name__)

COMPILED_SUFFIXES = (".v", ".sv")
CANDIDATE_FILE, TESTBENCH_FILE = "_candidate.sv", "_testbench.sv"
# The module names a task's description gives ("a module named xor_gate", "module xor_gate (").
NAMED_IN_PROSE = re.compile(
    r"\bmodule\s+(?:(?:named|called)\s+`?([A-Za-z_]\w*)|`([A-Za-z_]\w*)`|([A-Za-z_]\w*)\s*[(#;])", re.I
)

# What may stand beside a pass report in a line that is a verdict and nothing else: punctuation, counts,
# format specifiers and the words of "All 8 tests passed", "==Your Design Passed==", "TEST PASSED at
# time %t". Any other word makes it a message about something ("parity check passed").
VERDICT_FRAME = re.compile(
    r"(?i)%[-\d.]*\w|\b(?:all|the|your|my|this|tests?|cases?|checks?|design|module|dut|simulation|sim|testbench|tb|"
    r"results?|status|overall|final|ok|at|time|in|after|with|on|and|of|were|have|has|been|is|successfully|"
    r"samples?|vectors?|cycles?|patterns?|comparisons?|assertions?|outputs?|warnings?|complete|completed|done|"
    r"finished|\d+)\b|[^\w%]+|_"
)


def _compile(pattern: str, key: str) -> re.Pattern:
    try:
        return re.compile(pattern, re.M)
    except re.error as err:
        raise ChipadaptError(f"eval.verilog.shape.{key}: {pattern!r} is not a regular expression ({err})") from None


def _counts(match: re.Match) -> list[float]:
    """The numbers a report captures, thousands separators dropped ("1,024" is 1024). One too long for
    int() (Python refuses over 4300 digits) is infinite: still more than zero and than any shorter count."""
    digits = [g.replace(",", "") for g in match.groups() if g is not None]
    significant = [d.lstrip("0") or "0" for d in digits if d.isdigit()]
    return [int(d) if len(d) <= 4000 else math.inf for d in significant]


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
            named = {"".join(names) for names in NAMED_IN_PROSE.findall(record["prompt"])}
            if named and module not in named:
                log.warning(
                    "%s: task %s's description names module %s but its testbench instantiates %s; "
                    "the model is asked for %s (the testbench's name is the one that compiles)",
                    where,
                    record["task_id"],
                    ", ".join(sorted(named)),
                    module,
                    module,
                )
            reserved = set(defined_modules(record["test"])) | set(defined_modules(compiled))
            tasks.append(
                {**record, "module": module, "testbench_tops": tops, "source_files": files, "reserved": reserved}
            )
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

    def reserved_modules(self, task: dict) -> frozenset[str]:
        """Modules the testbench and the extra sources define: a candidate's own copy is dropped."""
        return frozenset(task["reserved"])

    def reference(self, task: dict) -> str:
        if not isinstance(task.get("ref"), str):
            raise ChipadaptError(
                f'eval.verilog.references_only: task {task["task_id"]} has no reference solution ("ref")'
            )
        return task["ref"]

    def simulate(self, task: dict, candidate: str, timeout_s: float) -> SimResult:
        printed = self._printed_verdict(candidate, task["module"])
        if printed is not None:
            return SimResult(False, "refused", f"the candidate prints a verdict itself: {printed}")
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
        return self.verdict(ran.output, ran.returncode)

    def _printed_verdict(self, candidate: str, module: str) -> str | None:
        """What the design or a helper it instantiates may print that reads as a verdict line: a print
        call's strings, or any string literal (one held in a variable is printed as `$display("%0s", m)`)."""
        defined = modules(candidate)
        design = next((text for name, text in defined if name == module), candidate)
        for text in [design, *needed_helpers(design, defined)]:
            for printed in printed_strings(text, macros=candidate) + string_literals(text, macros=candidate):
                if self._verdict_line(printed):
                    return f'"{printed}"'
        return None

    def _verdict_line(self, text: str) -> bool:
        """Whether `text` is pass evidence or a clean report and otherwise only a verdict's frame ("TEST
        PASSED", "All 8 tests passed", "Errors: 0"); a message about the design ("parity check passed",
        "ECC: 0 errors corrected") is not."""
        failures, evidence = self._matches(text)
        if failures or not evidence:
            return False
        rest = text
        for match in sorted(evidence, key=lambda m: m.start(), reverse=True):
            rest = rest[: match.start()] + " " + rest[match.end() :]
        return not VERDICT_FRAME.sub("", rest)

    def _matches(self, output: str) -> tuple[list[re.Match], list[re.Match]]:
        """(failure reports, pass evidence and clean reports): the rule in the module docstring."""
        failures, evidence = [], []
        for match in self.fail_re.finditer(output):
            counts = _counts(match)
            # The last count is the word's own: in "PASS: 10 FAIL: 0" the 10 before FAIL counts passes.
            (evidence if counts and counts[-1] == 0 else failures).append(match)
        for match in self.pass_re.finditer(output):
            counts = _counts(match)
            short = counts and (counts[0] == 0 or (len(counts) > 1 and counts[0] < counts[1]))
            (failures if short else evidence).append(match)
        return failures, evidence

    def _reports(self, output: str) -> tuple[list[str], list[str]]:
        failures, evidence = self._matches(output)
        return [m.group(0) for m in failures], [m.group(0) for m in evidence]

    def verdict(self, output: str, returncode: int = 0) -> SimResult:
        failures, evidence = self._reports(output)
        if failures:
            return SimResult(False, "ok", f"failed: {failures[0]!r} ({len(failures)} failure report(s))")
        if not evidence:
            return SimResult(False, "simulate", "no verdict in the output: " + tail(output, 400))
        if returncode != 0:
            return SimResult(False, "simulate", f"simulator exited with {returncode}: " + tail(output, 400))
        return SimResult(True, "ok", f"passed: {evidence[-1]!r}")
