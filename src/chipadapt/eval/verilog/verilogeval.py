"""VerilogEval v2's shape: {task_id, prompt, ref, test}; the design is always `TopModule`, and the
testbench compares it with the reference `RefModule` (simulate.py)."""

import re
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.verilog.hdl_scan import defined_modules
from chipadapt.eval.verilog.simulate import SimResult, simulate
from chipadapt.io.jsonl import jsonl_records, unique_field


class VerilogEvalShape:
    def read(self, path: str | Path) -> list[dict]:
        path = Path(path)
        tasks = []
        for lineno, record in unique_field(
            jsonl_records(path, missing=f"eval.verilog.path: {path} does not exist"), path, "task_id"
        ):
            missing = [k for k in ("task_id", "prompt", "ref", "test") if not isinstance(record.get(k), str)]
            if missing:
                raise ChipadaptError(f"{path}:{lineno}: missing string field(s) {missing}")
            tasks.append(record)
        return tasks

    def module_name(self, task: dict) -> str:
        return "TopModule"

    def reserved_modules(self, task: dict) -> frozenset[str]:
        """The testbench's modules (tb, stimulus_gen) and RefModule: a candidate's own copy is dropped."""
        return frozenset(defined_modules(task["test"])) | {"RefModule"}

    def reference(self, task: dict) -> str:
        return re.sub(r"\bRefModule\b", "TopModule", task["ref"])

    def simulate(self, task: dict, candidate: str, timeout_s: float) -> SimResult:
        return simulate(candidate, task["ref"], task["test"], timeout_s)
