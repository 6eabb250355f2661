"""Fake reproduction folders for the report's tests: evaluate.py results and per-item files, DAPT
manifests and the ledger, as a full (or fast-like) run would leave them, built in a tmp folder."""

import json
import random
from pathlib import Path

from omegaconf import OmegaConf

from chipadapt.eval.items import summarize
from chipadapt.reproduce.report.context import Context
from chipadapt.reproduce.steps import Step

SOURCES = ["openroad", "orfs", "ibex", "opentitan", "yosys", "picorv32"]
LRS = {"dapt_lr5e-6": 5e-6, "dapt_lr5e-5": 5e-5, "dapt_lr3e-4": 3e-4, "dapt_lr1e-3": 1e-3}


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def write_items(folder: Path, task: str, items: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{task}_items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))


def corpus_item(split: str, i: int, bpb: float, n_bytes: int, pooled: bool = True) -> dict:
    """A held-out document as corpus_ppl scores it: a domain document also carries the pooled
    `domain_all.bpb` (unless `pooled` is off: a run from before it)."""
    score = {"num": bpb * n_bytes, "den": n_bytes}
    both = split != "general" and pooled
    return {
        "id": f"{split}/doc{i}",
        "split": split,
        "tokens": n_bytes // 4,
        "bytes": n_bytes,
        "scores": {f"{split}.bpb": score, **({"domain_all.bpb": score} if both else {})},
    }


def corpus_items(
    domain_scale: float, general_scale: float, docs: int = 12, seed: int = 0, pooled: bool = True
) -> list[dict]:
    """Held-out documents of every source and WikiText-2; bpb of each document times the scale (the
    same documents and document-to-document spread in every run, so runs pair)."""
    rng = random.Random(seed)
    items = []
    for split in [*SOURCES, "general"]:
        scale = general_scale if split == "general" else domain_scale
        for i in range(docs):
            n_bytes = rng.randint(400, 2000)
            bpb = rng.uniform(0.8, 1.4) * scale * random.Random(f"{split}{i}").uniform(0.97, 1.03)
            items.append(corpus_item(split, i, bpb, n_bytes, pooled))
    return items


def corpus_results(items: list[dict]) -> dict:
    """results.json's corpus_ppl: every score summarised (the pooled domain_all.bpb among them, where the
    documents carry it) and domain_mean.bpb, the unweighted mean over the sources."""
    fields = summarize(items)
    domain = [fields[f"{s}.bpb"] for s in SOURCES]
    mean = sum(domain) / len(domain)
    for split in [*SOURCES, "general"]:
        fields[f"{split}.documents"] = sum(i["id"].startswith(f"{split}/") for i in items)
        fields[f"{split}.tokens"] = sum(i["tokens"] for i in items if i["id"].startswith(f"{split}/"))
    return {**fields, "domain_mean.bpb": mean, "domain_mean.bpb_ci": [mean * 0.98, mean * 1.02]}


def ifeval_items(passed: list[bool]) -> list[dict]:
    return [
        {
            "id": str(k),
            "scores": {"prompt_loose": ok, "instruction_loose": {"num": 2 if ok else 0, "den": 2}},
        }
        for k, ok in enumerate(passed)
    ]


def mcq_items(right: list[bool]) -> list[dict]:
    return [{"id": f"q{k}", "scores": {"acc": ok}} for k, ok in enumerate(right)]


def eda_items(f1: list[float]) -> list[dict]:
    return [{"id": f"s{k}", "scores": {"call_f1": v}} for k, v in enumerate(f1)]


def rag_items(plain: list[float], rag: list[float]) -> list[dict]:
    return [
        {"id": f"r{k}", "scores": {"rougeL": a, "rougeL_rag": b, "rag_gain": b - a}}
        for k, (a, b) in enumerate(zip(plain, rag))
    ]


def write_eval(out: Path, name: str, tasks: dict[str, list[dict]]) -> None:
    results = {}
    for task, items in tasks.items():
        write_items(out / name, task, items)
        results[task] = corpus_results(items) if task == "corpus_ppl" else summarize(items)
        if task == "ifeval":
            results[task]["prompts"] = len(items)
        if task == "mcq":
            results[task]["questions"] = len(items)
    write_json(out / name / "results.json", results)


def dapt_manifest(out: Path, name: str, lr: float, domain_after: float, general_after: float, steps: int) -> None:
    before = {s: {"bpb": 1.2} for s in SOURCES} | {"general": {"bpb": 1.1}}
    after = {s: {"bpb": domain_after} for s in SOURCES} | {"general": {"bpb": general_after}}
    write_json(
        out / name / "manifest.json",
        {
            "metrics": {"before": before, "after": after, "global_step": steps, "train_tokens_per_s": 812.5},
            "data": {"val_sequences": {s: 8 for s in SOURCES} | {"general": 6}},
            "config": {
                "data": {"global_batch_size": 8, "seq_len": 512, "val_max_bytes": 16384},
                "optim": {"lr": lr},
                "tokenizer": {"name": "base"},
            },
        },
    )


def steps_of(names: list[str]) -> list[Step]:
    steps = []
    for name in names:
        if name in LRS:
            steps.append(Step(name, "train.py", (), "dapt", meta={"tokenizer": "base", "lr": LRS[name]}))
        elif name == "dapt":
            steps.append(Step(name, "train.py", (), "dapt", label="chip model DAPT"))
        elif name == "sft":
            steps.append(Step(name, "train.py", (), "sft"))
        elif name == "retrieval_eval":
            steps.append(Step(name, "evaluate.py", (), "retrieval"))
        else:
            steps.append(Step(name, "evaluate.py", (), "models", label=name))
    return steps


def fake_run(out: Path, drop: float = 0.8, large_lr_general: float = 1.1, full: bool = True) -> list[Step]:
    """A reproduction: the lr sweep (all four lrs when `full`, else 5e-6/5e-5 without their evaluations),
    the chip model's DAPT at 1e-3 with held-out domain bpb times `drop`, SFT, the evaluations."""
    sweep = list(LRS) if full else ["dapt_lr5e-6", "dapt_lr5e-5"]
    evals = ["eval_base", "eval_sft"] + (["eval_dapt", *(f"eval_{n}" for n in sweep)] if full else [])
    names = [*sweep, "dapt", "sft", *evals]
    for name in sweep:
        dapt_manifest(out, name, LRS[name], 1.2 - 100 * LRS[name], 1.1, steps=12)
    dapt_manifest(out, "dapt", 1e-3, 1.2 * drop, 1.12, steps=122)
    write_json(
        out / "sft" / "manifest.json",
        {"metrics": {"before": {"eda_heldout": {"loss": 1.6}}, "after": {"eda_heldout": {"loss": 1.3}}}},
    )
    rng = random.Random(1)
    base_ifeval = [rng.random() < 0.6 for _ in range(541)]
    chip_ifeval = [ok and rng.random() > 0.3 for ok in base_ifeval]  # the chip model loses ~18 points
    base_mcq = [rng.random() < 0.45 for _ in range(114)]
    write_eval(
        out,
        "eval_base",
        {
            "corpus_ppl": corpus_items(1.0, 1.0),
            "ifeval": ifeval_items(base_ifeval),
            "mcq": mcq_items(base_mcq),
            "eda_script": eda_items([0.1] * 40),
            "rag_qa": rag_items([0.2] * 16, [0.2] * 16),
        },
    )
    write_eval(
        out,
        "eval_sft",
        {
            "corpus_ppl": corpus_items(drop, 1.02),
            "ifeval": ifeval_items(chip_ifeval),
            "mcq": mcq_items(base_mcq),
            "eda_script": eda_items([0.1 + 0.3 * (k % 2) for k in range(40)]),
            "rag_qa": rag_items([0.2] * 16, [0.2 + (0.01 if k % 2 else -0.01) for k in range(16)]),
        },
    )
    if full:
        write_eval(out, "eval_dapt", {"corpus_ppl": corpus_items(drop, 1.01), "mcq": mcq_items(base_mcq)})
        for name in sweep:
            general = large_lr_general if LRS[name] >= 1e-3 else 1.0
            write_eval(out, f"eval_{name}", {"corpus_ppl": corpus_items(1.0 - 50 * LRS[name], general)})
    ledger = {n: {"status": "completed", "seconds": 60.0} for n in names}
    ledger["dapt"]["choice"] = {
        "overrides": ["optim.lr=0.001"],
        "winner": "dapt_lr1e-3" if full else "dapt_lr5e-5",
        "score": -1.1,
        "by": "heldout_domain_bpb",
        "scores": {n: -(1.2 - 100 * LRS[n]) for n in sweep},
    }
    write_json(out / "steps.json", ledger)
    return steps_of(names)


def context(out: Path, steps: list[Step]) -> Context:
    ledger = json.loads((out / "steps.json").read_text())
    return Context(out, out / "report", {s.name: s for s in steps}, ledger, out / "base", out / "shared")


def build(out: Path, steps: list[Step], variant: str = "full") -> str:
    from chipadapt.reproduce.report.build import build_report

    cfg = OmegaConf.create(
        {"paths": {"shared_data": str(out / "shared")}, "base_model": str(out / "base"), "chip_dapt": "dapt"}
    )
    cfg.variant = {"name": variant}
    return build_report(cfg, steps, out, out / "report").read_text()


def row(text: str, finding: str) -> list[str]:
    """The headline row of a finding, as cells."""
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {finding}"))
    return [c.strip() for c in line.strip("|").split(" | ")]
