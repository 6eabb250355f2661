"""`verilog`: VerilogEval v2 RTL generation, checked by simulation with Icarus Verilog.

Each task's reply is cut down to its `TopModule` and the helper modules it defines (eval/verilog/extract.py),
compiled with the reference `RefModule` and the self-checking testbench, and simulated with a
timeout. pass@1 is greedy by default; with `samples=n` and a temperature, pass@k uses the unbiased
estimator 1 - C(n-c, k) / C(n, k).
Each item keeps the prompt, the model's raw replies and the code taken from them (`prediction`); its
`stage` per sample is compile | simulate | timeout | refused | ok (simulated to a verdict), and
`compile_errors`, `timeouts` and `refused` count samples, out of `simulations` (tasks x samples).
`references_only=true` simulates the reference solutions themselves (VerilogEval's own check:
153/156 spec-to-rtl tasks pass with iverilog 11).
The benchmark's shape (`shape`, built by Hydra) reads the tasks, names the design's module and checks a
candidate: VerilogEval's (eval/verilog/verilogeval.py) or a description plus a self-checking testbench
that prints its own verdict (eval/verilog/self_checking.py).
"""

import logging
import math
import re
from concurrent.futures import ThreadPoolExecutor

from rich.progress import track

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import summarize
from chipadapt.eval.scoring import generate
from chipadapt.eval.task_base import TaskBase
from chipadapt.eval.verilog.extract import extract_module
from chipadapt.eval.verilog.simulate import require_iverilog
from chipadapt.report import while_running

log = logging.getLogger(__name__)

INSTRUCTION = (
    "You are a Verilog RTL designer. Implement the following in synthesizable Verilog. "
    "Reply with the complete module named {module} inside a ```verilog code block.\n\n{prompt}"
)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Codex (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


class VerilogTask(TaskBase):
    def __init__(
        self,
        path: str,
        mode: str,
        limit: int | None,
        max_new_tokens: int,
        batch_size: int,
        samples: int,
        temperature: float,
        top_p: float,
        ks: list[int],
        timeout_s: float,
        workers: int,
        references_only: bool,
        shape,
    ):
        if mode not in ("chat", "completion"):
            raise ChipadaptError(f"eval.verilog.mode: {mode!r} is not one of chat, completion")
        # workers=0 was a ValueError of the thread pool; a timeout <= 0 made every task a timeout
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ChipadaptError(f"eval.verilog.workers: {workers!r} is not a whole number >= 1")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0:
            raise ChipadaptError(f"eval.verilog.timeout_s: {timeout_s!r} must be a number of seconds > 0")
        if samples > 1 and temperature <= 0:
            raise ChipadaptError("eval.verilog: samples > 1 needs a temperature > 0")
        self.path, self.mode, self.limit = path, mode, limit
        self.max_new_tokens, self.batch_size, self.samples = max_new_tokens, batch_size, samples
        self.temperature, self.top_p, self.ks = temperature, top_p, [k for k in ks if k <= samples]
        self.timeout_s, self.workers, self.references_only = timeout_s, workers, references_only
        self.shape = shape  # VerilogEvalShape or SelfCheckingShape: reads tasks, names the module, simulates

    def inputs(self) -> list[tuple[str, str]]:
        return [("path", str(self.path))]

    @property
    def needs_model(self) -> bool:
        return not self.references_only

    def _candidates(self, model, tokenizer, tasks: list[dict]) -> tuple[list[list[str]], list, list]:
        """Per task: the candidates (one per sample), the model's raw replies, the prompt it was given."""
        if self.references_only:
            return [[self.shape.reference(t)] for t in tasks], [None] * len(tasks), [None] * len(tasks)
        names = [self.shape.module_name(t) for t in tasks]
        if self.mode == "chat":
            prompts = [INSTRUCTION.format(prompt=t["prompt"].strip(), module=name) for t, name in zip(tasks, names)]
            headers = [None] * len(tasks)
        else:
            prompts = [t["prompt"] for t in tasks]
            headers = [
                (re.search(rf"\bmodule\s+{re.escape(name)}\b.*", t["prompt"], re.S) or [None])[0]
                for t, name in zip(tasks, names)
            ]
            if None in headers:
                where = headers.index(None)
                raise ChipadaptError(
                    f"eval.verilog.mode=completion: task {tasks[where]['task_id']} "
                    f"has no `module {names[where]}` header in its prompt"
                )
        out, raw = [[] for _ in tasks], [[] for _ in tasks]
        for sample in range(self.samples):
            replies = generate(
                model,
                tokenizer,
                prompts,
                self.batch_size,
                self.max_new_tokens,
                chat=self.mode == "chat",
                temperature=self.temperature,
                top_p=self.top_p,
                progress=self.label("verilog") + (f" sample {sample + 1}/{self.samples}" if self.samples > 1 else ""),
            )
            for i, (reply, header) in enumerate(zip(replies, headers)):
                raw[i].append(reply)
                out[i].append(extract_module(reply, header, names[i], self.shape.reserved_modules(tasks[i])))
        return out, raw, prompts

    def run(self, model=None, tokenizer=None) -> dict[str, float]:
        require_iverilog()
        tasks = self.shape.read(self.path)[: self.limit]
        if not tasks:  # a pass@1 over no tasks is no score
            raise ChipadaptError(f"eval.verilog: no tasks in {self.path} (limit={self.limit})")
        candidates, replies, prompts = self._candidates(model, tokenizer, tasks)
        jobs = [(ti, si, code) for ti, codes in enumerate(candidates) for si, code in enumerate(codes)]
        with ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(self.shape.simulate, tasks[ti], code, self.timeout_s) for ti, _, code in jobs]
            sims = [f.result() for f in track(futures, description="simulating", **while_running())]
        per_task = [[] for _ in tasks]
        for (ti, _, _), sim in zip(jobs, sims):
            per_task[ti].append(sim)
        n = self.samples if not self.references_only else 1
        # One sample per task: pass@1 is pass/fail (an exact binomial interval); more: the unbiased estimate per task.
        self.items = [
            {
                "id": t["task_id"],
                "prompt": prompt,  # as given to the model (null under references_only)
                "reply": reply,  # the model's raw replies, one per sample; `prediction` is the code taken from each
                "prediction": codes,
                "reference": t.get("ref"),
                "scores": {
                    f"pass@{k}": (bool(passed) if n == 1 else pass_at_k(n, passed, k)) for k in (self.ks or [1])
                },
                "stage": [s.stage for s in sims_],
                "detail": [s.detail for s in sims_],
            }
            for t, sims_, codes, reply, prompt in zip(tasks, per_task, candidates, replies, prompts)
            for passed in [sum(s.passed for s in sims_)]
        ]
        results = summarize(self.items)
        results["tasks"] = len(tasks)
        results["passed_tasks"] = sum(any(s.passed for s in sims_) for sims_ in per_task)
        # Counted over simulations (tasks x samples), like `simulations` itself; per task: each item's `stage`.
        results["simulations"] = len(sims)
        results["compile_errors"] = sum(s.stage == "compile" for s in sims)
        results["timeouts"] = sum(s.stage == "timeout" for s in sims)
        results["refused"] = sum(s.stage == "refused" for s in sims)
        return results
