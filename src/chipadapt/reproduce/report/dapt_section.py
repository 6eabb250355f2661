"""Section 2: domain-adaptive pretraining, base vs. augmented tokenizer, and the learning-rate ablation.

Each DAPT step validates on the same held-out documents of every corpus source and on WikiText-2
test before its first and after its last step (manifest.json, `metrics.before/after`). Bits per
byte compare across tokenizers; perplexity does not (a longer token covers more text).
"""

import csv

import matplotlib.pyplot as plt

from chipadapt.reproduce.report.context import Context, fmt, get, missing, pct, table

GENERAL = "general"


def dapt_steps(ctx: Context) -> list[str]:
    return [name for name, step in ctx.steps.items() if step.section == "dapt" and ctx.has(name)]


def domain_mean(split_metrics: dict) -> float:
    values = [m["bpb"] for name, m in split_metrics.items() if name != GENERAL]
    return sum(values) / len(values)


def change(before: float, after: float) -> float:
    return 100 * (after - before) / before


def summary(ctx: Context, name: str) -> dict:
    manifest = ctx.read_json(name, "manifest.json")
    metrics = manifest["metrics"]
    before, after = metrics["before"], metrics["after"]
    meta = ctx.steps[name].meta
    row = {
        "name": name,
        "tokenizer": meta.get("tokenizer"),
        "lr": meta.get("lr"),
        "tokens": manifest["metrics"].get("global_step", 0)
        * manifest["config"]["data"]["global_batch_size"]
        * manifest["config"]["data"]["seq_len"]
        if isinstance(manifest.get("config"), dict)
        else None,
        "domain_before": domain_mean(before),
        "domain_after": domain_mean(after),
        "general_before": before[GENERAL]["bpb"],
        "general_after": after[GENERAL]["bpb"],
        "splits": {s: change(before[s]["bpb"], after[s]["bpb"]) for s in before},
    }
    row["domain_change"] = change(row["domain_before"], row["domain_after"])
    row["general_change"] = change(row["general_before"], row["general_after"])
    return row


def loss_curves(ctx: Context, names: list[str]):
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name in names:
        path = ctx.folder(name) / "metrics.csv"
        if not path.is_file():
            continue
        points = [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(path.open()) if r.get("train/loss")]
        if points:
            ax.plot(*zip(*points), marker=".", label=ctx.label(name))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("DAPT training loss (augmented tokenizer: a longer token per position, loss not comparable)")
    ax.legend(fontsize=8)
    return fig


def split_changes(ctx: Context, rows: list[dict]):
    splits = list(rows[0]["splits"])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        ax.bar(
            [j + i * width for j in range(len(splits))],
            [row["splits"][s] for s in splits],
            width,
            label=ctx.label(row["name"]),
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(splits))], splits)
    ax.set_ylabel("bits/byte change after DAPT (%)\n(negative: better)")
    ax.set_title("Held-out perplexity per corpus source and WikiText-2 (general), after vs. before")
    ax.legend(fontsize=8)
    return fig


def lr_ablation(ctx: Context, rows: list[dict]):
    arm = sorted((r for r in rows if r["tokenizer"] == "base" and r["lr"]), key=lambda r: r["lr"])
    if len(arm) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([r["lr"] for r in arm], [r["domain_change"] for r in arm], marker="o", label="domain (mean of sources)")
    ax.plot([r["lr"] for r in arm], [r["general_change"] for r in arm], marker="s", label="general (WikiText-2)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (constant, AdamW)")
    ax.set_ylabel("bits/byte change (%)")
    ax.set_title("DAPT learning-rate ablation (base tokenizer)")
    ax.legend(fontsize=8)
    return fig


def section(ctx: Context, eval_of: dict[str, str]) -> tuple[str, dict]:
    names = dapt_steps(ctx)
    if not names:
        return missing("DAPT", [n for n, s in ctx.steps.items() if s.section == "dapt"]), {}
    rows = [summary(ctx, n) for n in names]
    header = [
        "run",
        "tokenizer",
        "lr",
        "tokens trained",
        "domain bpb before → after",
        "change",
        "WikiText-2 bpb before → after",
        "change",
        "IFEval instr. (loose)",
        "MMLU acc",
    ]
    base_eval = ctx.results("eval_base")
    body = [
        [
            "general model (before DAPT)",
            "base",
            "–",
            "0",
            fmt(rows[0]["domain_before"]),
            "",
            fmt(rows[0]["general_before"]),
            "",
            fmt(get(base_eval, "ifeval.instruction_loose")),
            fmt(get(base_eval, "mcq.acc")),
        ]
    ]
    for r in rows:
        ev = ctx.results(eval_of.get(r["name"], "")) if eval_of.get(r["name"]) else None
        body.append(
            [
                ctx.link(r["name"]),
                r["tokenizer"],
                f"{r['lr']:g}",
                f"{r['tokens']:,}" if r["tokens"] else "–",
                f"{fmt(r['domain_before'])} → {fmt(r['domain_after'])}",
                pct(r["domain_change"]),
                f"{fmt(r['general_before'])} → {fmt(r['general_after'])}",
                pct(r["general_change"]),
                fmt(get(ev, "ifeval.instruction_loose")),
                fmt(get(ev, "mcq.acc")),
            ]
        )
    images = [
        ctx.save_figure(loss_curves(ctx, names), "dapt_loss.png"),
        ctx.save_figure(split_changes(ctx, rows), "dapt_splits.png"),
    ]
    ablation = lr_ablation(ctx, rows)
    if ablation is not None:
        images.append(ctx.save_figure(ablation, "dapt_lr_ablation.png"))

    base_arm = {r["lr"]: r for r in rows if r["tokenizer"] == "base"}
    aug = [r for r in rows if r["tokenizer"] == "augmented"]
    facts = {
        "rows": rows,
        "base_arm": base_arm,
        "aug": aug[0] if aug else None,
        "same_lr_base": next((base_arm[r["lr"]] for r in aug if r["lr"] in base_arm), None),
    }
    text = [
        "Bits per byte (bpb) on held-out documents: for the corpus, documents the DAPT blend left out "
        "(the same hash split in training and evaluation), mean over the six sources; "
        "for general text, WikiText-2 test. "
        "IFEval and MMLU from the model-suite evaluations (section 6).",
        "",
        table(header, body),
        "",
        *images,
    ]
    return "\n".join(text), facts
