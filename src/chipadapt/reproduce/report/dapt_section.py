"""Section 2: domain-adaptive pretraining: the learning-rate sweep, the lr it chose, the chip model's long
run against the general model, and the augmented tokenizer's arms.

Each DAPT step validates on held-out documents of every corpus source and on WikiText-2 test before
its first and after its last step (manifest.json, `metrics.before/after`): point figures on a few
sequences, which the sweep's choice reads. The intervals come from evaluate.py's corpus_ppl runs
(eval_base, eval_dapt, eval_dapt_lr*), whose per-document records are paired against the general
model's (report/pairs.py). Held-out domain bpb is corpus_ppl's domain_all.bpb, every held-out domain
document pooled (report/domain_bpb.py). Bits per byte compare across tokenizers; perplexity does not.
"""

import csv

import matplotlib.pyplot as plt

from chipadapt.reproduce.report import domain_bpb
from chipadapt.reproduce.report.context import Context, fmt, get, missing, pct, table
from chipadapt.reproduce.report.dapt_sweep import (
    BASE_EVAL,
    choice_text,
    sweep_arms,
    sweep_part,
    sweep_plot,
    value_ci_text,
    with_ci,
)
from chipadapt.reproduce.report.domain_bpb import GENERAL_SPLIT
from chipadapt.reproduce.report.pairs import DocumentPair, NotPaired, change_pct, diff_text, documents, pct_text

GOAL_PCT = 15.0  # issue 23: the chip model's held-out domain bpb at least this much lower than the general model's


def dapt_steps(ctx: Context) -> list[str]:
    return [name for name, step in ctx.steps.items() if step.section == "dapt" and ctx.has(name)]


def domain_mean(split_metrics: dict) -> float:
    values = [m["bpb"] for name, m in split_metrics.items() if name != GENERAL_SPLIT]
    return sum(values) / len(values)


def change(before: float, after: float) -> float:
    return 100 * (after - before) / before


def validation_sequences(manifest: dict, data: dict) -> str | int | None:
    """How many sequences each split validated on: the cap of a run from before `data.val_max_bytes`
    (`data.val_max_sequences`), else the counts the run recorded per split ("6-34" where they differ)."""
    if data.get("val_max_sequences") is not None:
        return data["val_max_sequences"]
    counts = sorted(set(((manifest.get("data") or {}).get("val_sequences") or {}).values()))
    if not counts:
        return None
    return counts[0] if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def summary(ctx: Context, name: str) -> dict:
    """A DAPT run's own record: its lr and tokenizer (from the step's meta, or for a step whose lr was
    chosen, from the config it ran with), tokens trained, and the validation before and after."""
    manifest = ctx.read_json(name, "manifest.json")
    metrics = manifest["metrics"]
    before, after = metrics["before"], metrics["after"]
    meta = ctx.steps[name].meta
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    data = config.get("data") or {}
    row = {
        "name": name,
        "sweep": "lr" in meta,  # a short run of the sweep (the chip model's DAPT has no lr of its own)
        "tokenizer": str(meta.get("tokenizer") or (config.get("tokenizer") or {}).get("name") or "–"),
        "lr": meta.get("lr") or (config.get("optim") or {}).get("lr"),
        "tokens": metrics.get("global_step", 0) * data["global_batch_size"] * data["seq_len"]
        if "global_batch_size" in data and "seq_len" in data
        else None,
        "tokens_per_s": metrics.get("train_tokens_per_s"),
        "val_sequences": validation_sequences(manifest, data),
        "domain_before": domain_mean(before),
        "domain_after": domain_mean(after),
        "general_before": before[GENERAL_SPLIT]["bpb"],
        "general_after": after[GENERAL_SPLIT]["bpb"],
        "splits": {s: change(before[s]["bpb"], after[s]["bpb"]) for s in before},
    }
    row["domain_change"] = change(row["domain_before"], row["domain_after"])
    row["general_change"] = change(row["general_before"], row["general_after"])
    return row


def goal(p: DocumentPair) -> str:
    """Whether the fall in held-out domain bpb reaches the issue's goal, and how surely."""
    fall, low, high = (-x for x in change_pct(p.d))  # a fall is a positive number here
    if min(fall, low, high) >= GOAL_PCT:
        return f"met: held-out domain bpb {fall:.1f}% lower, its whole interval beyond {GOAL_PCT:g}%"
    if fall >= GOAL_PCT:
        return f"met at the estimate ({fall:.1f}% lower), not beyond its interval ({min(low, high):.1f}% at worst)"
    return f"not met: {fall:.1f}% lower (interval {min(low, high):.1f}-{max(low, high):.1f}%), goal {GOAL_PCT:g}%"


# --- figures ---------------------------------------------------------------------------------------


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
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def split_changes(ctx: Context, rows: list[dict]):
    splits = list(rows[0]["splits"])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        ax.bar(
            [j + i * width for j in range(len(splits))],
            [row["splits"].get(s, 0.0) for s in splits],
            width,
            label=ctx.label(row["name"]),
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(splits))], splits)
    ax.set_ylabel("bits/byte change after DAPT (%)\n(negative: better)")
    ax.set_title("Training validation per corpus source and WikiText-2 (general), after vs. before")
    ax.legend(fontsize=8)
    return fig


def long_run(ctx: Context, chip: str, rows: list[dict], eval_of: dict[str, str]) -> dict | None:
    row = next((r for r in rows if r["name"] == chip), None)
    if row is None:
        return None
    evaluation = eval_of.get(chip, "")
    return {
        "name": chip,
        "row": row,
        "eval_step": evaluation if ctx.results(evaluation) else None,
        "choice": ctx.ledger.get(chip, {}).get("choice"),
        "minutes": (ctx.ledger.get(chip, {}).get("seconds") or 0) / 60,
        "domain": documents(ctx, BASE_EVAL, evaluation),
        "general": documents(ctx, BASE_EVAL, evaluation, domain=False),
    }


def pooled_row(base: dict | None, chip: dict | None, p: DocumentPair) -> list | None:
    """The measure compared, on top of the per-source rows: every domain document pooled (or, for runs
    from before domain_all.bpb, the mean of the sources)."""
    key = domain_bpb.MEAN if p.fallback else domain_bpb.POOLED  # the same measure on both sides
    before, after = with_ci(base, key), with_ci(chip, key)
    if before[0] is None or after[0] is None:
        return None
    tokens = sum(get(chip, f"corpus_ppl.{split}.tokens") or 0 for split in p.docs)
    label = "mean of sources (domain_mean.bpb)" if p.fallback else "all domain documents (domain_all.bpb)"
    return [
        label,
        sum(p.docs.values()),
        tokens or "–",
        value_ci_text(before),
        value_ci_text(after),
        pct(change(before[0], after[0])),
    ]


def per_source(ctx: Context, long: dict) -> list[str]:
    base, chip = ctx.results(BASE_EVAL), ctx.results(long["eval_step"])
    docs = long["domain"].docs if long["domain"] else {}
    splits = [*docs, GENERAL_SPLIT]
    pooled = pooled_row(base, chip, long["domain"]) if long["domain"] else None
    rows = [pooled] if pooled else []
    for split in splits:
        before, after = with_ci(base, f"corpus_ppl.{split}.bpb"), with_ci(chip, f"corpus_ppl.{split}.bpb")
        if before[0] is None or after[0] is None:
            continue
        rows.append(
            [
                split,
                get(chip, f"corpus_ppl.{split}.documents"),
                get(chip, f"corpus_ppl.{split}.tokens"),
                value_ci_text(before),
                value_ci_text(after),
                pct(change(before[0], after[0])),
            ]
        )
    if not rows:
        return []
    return [
        "The pooled measure and each source (a source's own interval is degenerate where it holds out one "
        "document; pooled, that document is resampled with the others):",
        "",
        table(["split", "documents", "tokens", "general model bpb", "chip DAPT bpb", "change"], rows),
        "",
    ]


def long_part(ctx: Context, long: dict | None) -> list[str]:
    if long is None:
        return []
    r = long["row"]
    lines = [
        f"The chip model's DAPT ({ctx.link(long['name'])}): {r['tokens']:,} tokens"
        if r["tokens"]
        else f"The chip model's DAPT ({ctx.link(long['name'])})",
    ]
    lines[0] += (
        f" at lr {r['lr']:g}" if r["lr"] else ""
    ) + f", {fmt(r['tokens_per_s'], 0)} tokens/s ({long['minutes']:.1f} min of wall time)."
    if long["domain"]:
        p = long["domain"]
        d = p.d
        measure = "mean of the sources" if p.fallback else f"domain_all.bpb, all {d.n} held-out domain documents pooled"
        lines[0] += (
            f" Held-out domain bpb ({measure}; {ctx.link(BASE_EVAL)} → {ctx.link(long['eval_step'])}): "
            f"{d.a:.3f} → {d.b:.3f}, paired difference {diff_text(d, 'documents')}, {pct_text(d)}. "
            f"Issue goal (at least {GOAL_PCT:g}% lower): {long['goal']}."
            + (f" {domain_bpb.FALLBACK_NOTE}" if p.fallback else "")
        )
        if long["general"]:
            g = long["general"].d
            lines[0] += f" WikiText-2 bpb {g.a:.3f} → {g.b:.3f} ({pct_text(g)}, {g.n} documents)."
        lines += ["", *per_source(ctx, long)]
    elif isinstance(long["domain"], NotPaired):
        lines[0] += (
            f" Its corpus_ppl evaluation ({ctx.link(long['eval_step'])}) is not paired with the general model's: "
            f"{long['domain'].reason}. Its own validation only, domain bpb {r['domain_before']:.3f} → "
            f"{r['domain_after']:.3f} ({pct(r['domain_change'])}), WikiText-2 {pct(r['general_change'])}, "
            "without an interval."
        )
        lines.append("")
    else:
        lines[0] += (
            f" No corpus_ppl evaluation of it in this run ({long.get('eval_step') or 'eval_dapt'} not completed or "
            f"skipped by the variant): its own validation only, domain bpb {r['domain_before']:.3f} → "
            f"{r['domain_after']:.3f} ({pct(r['domain_change'])}), WikiText-2 {pct(r['general_change'])}, "
            "without an interval."
        )
        lines.append("")
    return lines


def augmented_arms(ctx: Context, aug: list[dict], same_text: dict[float, str], eval_of: dict[str, str]) -> list[dict]:
    """Each augmented-tokenizer run with its corpus_ppl evaluation paired by document against the
    base-tokenizer run at the same lr scored on the same text (`same_text`: lr -> that evaluation; domain
    and WikiText-2; None where either evaluation is missing)."""
    arms = []
    for r in aug:
        base = same_text.get(r["lr"])
        name = eval_of.get(r["name"], "")
        ran = bool(base and name and ctx.results(base) and ctx.results(name))
        arms.append(
            {
                **r,
                "eval_step": name if ran else None,
                "domain_vs_same": documents(ctx, base, name) if ran else None,
                "general_vs_same": documents(ctx, base, name, domain=False) if ran else None,
            }
        )
    return arms


def section(ctx: Context, eval_of: dict[str, str], chip: str, same_text: dict[float, str]) -> tuple[str, dict]:
    names = dapt_steps(ctx)
    if not names:
        return missing("DAPT", [n for n, s in ctx.steps.items() if s.section == "dapt"]), {}
    rows = [summary(ctx, n) for n in names]
    arms = sweep_arms(ctx, rows, eval_of)
    long = long_run(ctx, chip, rows, eval_of)
    if long and long["domain"]:
        long["goal"] = goal(long["domain"])
    choice = long["choice"] if long else ctx.ledger.get(chip, {}).get("choice")

    header = [
        "run",
        "tokenizer",
        "lr",
        "tokens trained",
        "tokens/s",
        "domain bpb before → after",
        "change",
        "WikiText-2 bpb before → after",
        "change",
    ]
    body = [
        [
            ctx.link(r["name"]),
            r["tokenizer"],
            f"{r['lr']:g}" if r["lr"] else "–",
            f"{r['tokens']:,}" if r["tokens"] else "–",
            fmt(r["tokens_per_s"], 0),
            f"{fmt(r['domain_before'])} → {fmt(r['domain_after'])}",
            pct(r["domain_change"]),
            f"{fmt(r['general_before'])} → {fmt(r['general_after'])}",
            pct(r["general_change"]),
        ]
        for r in rows
    ]
    images = [
        ctx.save_figure(loss_curves(ctx, names), "dapt_loss.png"),
        ctx.save_figure(split_changes(ctx, rows), "dapt_splits.png"),
    ]
    if len(arms) >= 2:
        images.append(ctx.save_figure(sweep_plot(arms), "dapt_lr_ablation.png"))

    by_lr = {a["lr"]: a for a in arms}
    aug = augmented_arms(ctx, [r for r in rows if r["tokenizer"].startswith("augmented")], same_text, eval_of)
    facts = {
        "rows": rows,
        "arms": arms,
        "long": long,
        "aug": aug,
        "same_lr_base": next((by_lr[r["lr"]] for r in aug if r["lr"] in by_lr), None),
    }
    text = [
        *sweep_part(ctx, arms, choice),
        choice_text(ctx, chip, choice) if chip in ctx.steps else "",
        "",
        *long_part(ctx, long),
        "Every DAPT run's own validation before its first and after its last step (a few held-out sequences per "
        "split, point figures; bits per byte compare across tokenizers):",
        "",
        table(header, body),
        "",
        *images,
    ]
    return "\n".join(text), facts
