"""The merge study's runs as the report reads them: ChipAlign over lambda with its two ends, each
baseline at the setting its screening chose, the screening grids with the ledger's scores, and
ChipAlign's own best lambda, chosen by the same criterion on the same prompts as the baselines'.

Lambda 0 is the instruct model (eval_base), 1 the chip model (eval_sft): evaluated on the same suite
as the merges, so the sweep's ends are measured, not assumed. Domain bpb is corpus_ppl's pooled
domain_all.bpb, or domain_mean.bpb for runs from before it (report/domain_bpb.py)."""

import csv
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import items_file, read_items
from chipadapt.reproduce.choices import Candidate, merge_balance, read_overrides, step_prompts
from chipadapt.reproduce.report import domain_bpb
from chipadapt.reproduce.report.context import Context, get

ENDPOINTS = ("eval_base", "eval_sft")  # lambda 0 and 1, as the baselines' `choose` names them
CHIPALIGN = "merge_chipalign"
CHIPALIGN_BEST = "merge_chipalign_best"  # the tasks the sweep leaves out, at the lambda it chose
BASELINES = {"linear": "merge_linear", "slerp": "merge_slerp", "ties": "merge_ties", "della": "merge_della"}
SCREENS = ("screen_interp", "screen_sparse")
# (results key, label, higher is better): every metric of the suite the merges are evaluated on
SUITE = [
    ("ifeval.prompt_loose", "IFEval prompt (loose)", True),
    ("ifeval.instruction_loose", "IFEval instr. (loose)", True),
    (domain_bpb.POOLED, "domain bpb", False),
    ("corpus_ppl.general.bpb", "WikiText-2 bpb", False),
    ("eda_script.syntax", "EDA parses", True),
    ("eda_script.call_f1", "EDA call F1", True),
    ("eda_script.arg_f1", "EDA arg F1", True),
    ("rag_qa.rougeL_rag", "QA ROUGE-L (RAG)", True),
]
INSTRUCT = "ifeval.instruction_loose"  # what merge_balance and the sweeps' callback read
DOMAIN = domain_bpb.POOLED


@dataclass
class Run:
    """One evaluated model of the study: a merge job or an endpoint."""

    name: str  # "chipalign 0.6", "instruct model", "linear"
    method: str  # chipalign, instruct, chip, linear, ...
    lam: float | None
    folder: Path
    results: dict
    rest: Path | None = None  # where the tasks the sweep left out were run (merge_chipalign_best)

    def folder_for(self, task: str) -> Path:
        """The folder holding the task's per-item records: the run's own, else the rest's (as `results`)."""
        if self.rest is not None and not items_file(self.folder, task).is_file():
            return self.rest
        return self.folder

    def value(self, key: str):
        return domain_bpb.value(self.results) if key == DOMAIN else get(self.results, key)

    def ci(self, key: str) -> tuple[float, float] | None:
        if key == DOMAIN:
            return domain_bpb.ci(self.results)
        ci = get(self.results, f"{key}_ci")
        return tuple(ci) if ci else None

    def ci_method(self, key: str) -> str | None:
        """How the interval was found, or why there is none (`interval n/a: ...`)."""
        return get(self.results, f"{domain_bpb.key(self.results) if key == DOMAIN else key}_ci_method")


def jobs(ctx: Context, step: str) -> list[Path]:
    """A completed multirun step's job folders that hold results, in job order."""
    if not ctx.has(step):
        return []
    folder = ctx.folder(step)
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and (p / "results.json").is_file()]
    return sorted(found, key=lambda p: int(p.name))


def merge_summary(folder: Path) -> dict:
    path = folder / "model" / "merge_manifest.json"
    return json.loads(path.read_text()).get("summary", {}) if path.is_file() else {}


def read_results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def endpoints(ctx: Context) -> dict[float, Run]:
    ends = {}
    for lam, name, method in ((0.0, ENDPOINTS[0], "instruct"), (1.0, ENDPOINTS[1], "chip")):
        results = ctx.results(name)
        if results:
            ends[lam] = Run(f"{method} model (lambda {lam:g})", method, lam, ctx.folder(name), results)
    return ends


def merge_lambda(folder: Path) -> float:
    lam = merge_summary(folder).get("lam")
    return float(lam if lam is not None else read_overrides(folder).get("merge.lam", "nan"))


def chipalign_runs(ctx: Context) -> list[Run]:
    """ChipAlign's jobs (no endpoints), by lambda."""
    runs = []
    for job in jobs(ctx, CHIPALIGN):
        lam = merge_lambda(job)
        runs.append(Run(f"chipalign {lam:g}", "chipalign", lam, job, read_results(job)))
    return sorted(runs, key=lambda r: r.lam)


def chipalign_rest(ctx: Context) -> Run | None:
    """merge_chipalign_best: the tasks the sweep left out, run at the lambda the sweep chose."""
    results = ctx.results(CHIPALIGN_BEST)
    if not results:
        return None
    folder = ctx.folder(CHIPALIGN_BEST)
    lam = merge_lambda(folder)
    return Run(f"chipalign {lam:g}", "chipalign", lam, folder, results)


def attach_rest(run: Run, rest: Run) -> None:
    """The sweep's run at the chosen lambda takes the rest of the suite's results and records (its own
    results win where both have a task)."""
    run.results, run.rest = {**rest.results, **run.results}, rest.folder


def baseline_runs(ctx: Context) -> dict[str, Run]:
    """Each baseline's full-suite run at the setting its screening chose."""
    runs = {}
    for method, step in BASELINES.items():
        results = ctx.results(step)
        if results:
            runs[method] = Run(method, method, merge_summary(ctx.folder(step)).get("lam"), ctx.folder(step), results)
    return runs


def setting(ctx: Context, method: str) -> str:
    """The overrides the baseline's `choose` took (from the ledger), e.g. 'merge.lam=0.6'."""
    choice = ctx.ledger.get(BASELINES[method], {}).get("choice") or {}
    return ", ".join(choice.get("overrides") or []) or "–"


def ifeval_ids(folder: Path) -> set[str]:
    path = items_file(folder, "ifeval")
    return set(read_items(path)) if path.is_file() else set()


def screening_ids(ctx: Context) -> set[str]:
    """The IFEval prompts the screening scored (the first `variant.screen_ifeval_prompts`): the
    prompts that chose the baselines' settings, and ChipAlign's lambda; read as merge_chipalign_best's
    `choose.prompts_from` reads them, so the report and the step choose on the same prompts."""
    return step_prompts(ctx.out, [step for step in SCREENS if ctx.has(step)])


def on_domain_mean(results: dict) -> dict:
    """results.json with domain_mean.bpb in place of domain_all.bpb: merge_balance reads domain_all.bpb, and a
    run from before it has only the mean of sources (the report's fallback, report/domain_bpb.py)."""
    corpus = results.get("corpus_ppl") or {}
    return {**results, "corpus_ppl": {**corpus, domain_bpb.POOLED_SCORE: corpus.get(domain_bpb.MEAN_SCORE)}}


def balance(ctx: Context, folder: Path, ids: set[str] | None) -> float | None:
    """merge_balance of a fully evaluated run, on the IFEval prompts `ids` only (all when None): the
    score the screening would have given it. The criterion reads run folders, so it gets temporary
    copies of the run and both ends: results.json and the IFEval items, the run's cut to those prompts;
    the code that chose the baselines then scores ChipAlign too. Where one of the three predates the
    pooled domain_all.bpb, all three are scored on domain_mean.bpb, so the shares compare like with like."""
    if not all(ctx.has(name) for name in ENDPOINTS):
        return None
    folders = {"run": folder, **{name: ctx.folder(name) for name in ENDPOINTS}}
    try:
        results = {name: read_results(f) for name, f in folders.items()}
        if domain_bpb.falls_back(list(results.values())):
            results = {name: on_domain_mean(r) for name, r in results.items()}
        with tempfile.TemporaryDirectory() as tmp:
            for name, source in folders.items():
                items = read_items(items_file(source, "ifeval"))
                kept = [item for i, item in items.items() if name != "run" or ids is None or i in ids]
                (Path(tmp) / name).mkdir()
                (Path(tmp) / name / "ifeval_items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in kept))
                (Path(tmp) / name / "results.json").write_text(json.dumps(results[name]))
            return merge_balance(Candidate(Path(tmp) / "run", {}), {"endpoints": list(ENDPOINTS)}, Path(tmp))
    except (ChipadaptError, FileNotFoundError, KeyError, ZeroDivisionError):
        return None  # an endpoint or a per-item file is missing: no score


@dataclass
class ScreenRow:
    method: str
    knobs: dict[str, str]  # the swept overrides, e.g. {"merge.lam": "0.6"}
    folder: Path
    results: dict
    score: float | None  # merge_balance, from the ledger's record of the choice
    chosen: bool


def screen_rows(ctx: Context, step: str) -> tuple[list[str], list[ScreenRow]]:
    """A screening step's grid: the knobs it swept and one row per job, scores from the ledger's
    records of the choices made among its jobs."""
    scores, winners = {}, set()
    for method_step in BASELINES.values():
        choice = ctx.ledger.get(method_step, {}).get("choice") or {}
        scores.update(choice.get("scores") or {})
        winners.add(choice.get("winner"))
    rows, knobs = [], []
    for job in jobs(ctx, step):
        overrides = read_overrides(job)
        swept = {k: v for k, v in overrides.items() if k.startswith(("merge.lam", "merge.method."))}
        knobs += [k for k in swept if k not in knobs]
        key = job.relative_to(ctx.out).as_posix()
        rows.append(
            ScreenRow(overrides.get("merge", "?"), swept, job, read_results(job), scores.get(key), key in winners)
        )
    return knobs, sorted(rows, key=lambda r: (r.method, [r.knobs.get(k, "") for k in knobs]))


def angles(runs: list[Run]) -> dict | None:
    """Angle between the chip and the instruct tensor, over the tensors of one ChipAlign merge
    (merge_diagnostics.csv): near zero, the geodesic and the straight line between them coincide."""
    path = next(
        (r.folder / "model" / "merge_diagnostics.csv" for r in runs if (r.folder / "model").is_dir()),
        None,
    )
    if path is None or not path.is_file():
        return None
    with path.open() as handle:
        values = [float(r["angle_deg"]) for r in csv.DictReader(handle) if r.get("angle_deg") not in (None, "")]
    return {"mean": sum(values) / len(values), "max": max(values), "tensors": len(values)} if values else None
