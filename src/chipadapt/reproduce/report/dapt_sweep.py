"""Section 2's learning-rate sweep: each short DAPT run's held-out domain and WikiText-2 bpb with their
intervals (evaluate.py's corpus_ppl runs, paired against the general model), the plot, and the lr the
chip model's DAPT took from them (the ledger's `choice`)."""

import matplotlib.pyplot as plt

from chipadapt.report import bracketed, unbounded, why_no_interval
from chipadapt.reproduce.report import domain_bpb
from chipadapt.reproduce.report.context import Context, fmt, get, table
from chipadapt.reproduce.report.domain_bpb import GENERAL_SPLIT
from chipadapt.reproduce.report.pairs import NotPaired, documents, pct_text

BASE_EVAL = "eval_base"


def sweep_plot(arms: list[dict]):
    """Held-out bpb against lr, from the corpus_ppl evaluations (with their intervals) where they ran,
    else from the runs' own validation."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key, label, marker in (("domain", "domain (documents pooled)", "o"), ("general", "general (WikiText-2)", "s")):
        points = [(a["lr"], a["eval"][key]) for a in arms if a["eval"] and a["eval"][key][0] is not None]
        if points:
            lrs, values = zip(*points)
            low = [v[0] - v[1][0] for v in values]
            high = [v[1][1] - v[0] for v in values]
            ax.errorbar(lrs, [v[0] for v in values], yerr=[low, high], marker=marker, capsize=3, label=label)
        else:
            ax.plot(
                [a["lr"] for a in arms],
                [a[f"{key}_after"] for a in arms],
                marker=marker,
                label=f"{label}, training validation",
            )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (constant, AdamW)")
    ax.set_ylabel("held-out bits/byte after the short run")
    ax.set_title("DAPT learning-rate sweep (base tokenizer, 95% intervals)")
    ax.legend(fontsize=8)
    return fig


# --- parts -----------------------------------------------------------------------------------------


def with_ci(results: dict | None, dotted: str) -> tuple[float | None, tuple[float, float] | None, str | None]:
    """(value, interval or None, `_ci_method`: what says why there is no interval)."""
    value, ci = get(results, dotted), get(results, f"{dotted}_ci")
    return value, (tuple(ci) if ci else None), get(results, f"{dotted}_ci_method")


def value_ci_text(value_ci: tuple) -> str:
    """`1.500 [1.200, 1.800]`; with no interval, the reason its `_ci_method` (a third element) gives
    (`1.500 (interval n/a: n=4, too few)`), else the bare value."""
    value, ci, *method = value_ci
    if value is None:
        return "–"
    why = why_no_interval(method[0] if method else None)
    if ci and not (why and unbounded(ci)):
        return f"{value:.3f} {bracketed(*ci, None)}"
    return f"{value:.3f} {why}" if why else f"{value:.3f}"


def sweep_arms(ctx: Context, rows: list[dict], eval_of: dict[str, str]) -> list[dict]:
    """The short base-tokenizer runs, by lr, each with its corpus_ppl evaluation and its paired
    difference from the general model (domain and WikiText-2)."""
    arms = []
    for r in sorted((r for r in rows if r["sweep"] and r["tokenizer"] == "base"), key=lambda r: r["lr"]):
        name = eval_of.get(r["name"], "")
        res = ctx.results(name) if name else None
        arms.append(
            {
                **r,
                "eval_step": name if res else None,
                "eval": {
                    "domain": domain_bpb.with_method(res),
                    "general": with_ci(res, f"corpus_ppl.{GENERAL_SPLIT}.bpb"),
                }
                if res
                else None,
                "domain_vs_base": documents(ctx, BASE_EVAL, name) if res else None,
                "general_vs_base": documents(ctx, BASE_EVAL, name, domain=False) if res else None,
            }
        )
    return arms


def sweep_part(ctx: Context, arms: list[dict], choice: dict | None) -> list[str]:
    if not arms:
        return []
    chosen = (choice or {}).get("winner")
    base = ctx.results(BASE_EVAL)
    fallback = domain_bpb.falls_back([base, *(ctx.results(a["eval_step"]) for a in arms if a["eval_step"])])
    body = []
    if base:
        body.append(
            [
                f"general model ({ctx.link(BASE_EVAL)})",
                "–",
                "0",
                value_ci_text(domain_bpb.with_method(base)),
                value_ci_text(with_ci(base, f"corpus_ppl.{GENERAL_SPLIT}.bpb")),
                "",
                "",
                "",
                "",
            ]
        )
    for a in arms:
        ev = a["eval"]
        score = (choice or {}).get("scores", {}).get(a["name"])
        body.append(
            [
                ctx.link(a["name"]) + (f" ({ctx.link(a['eval_step'])})" if a["eval_step"] else ""),
                f"{a['lr']:g}",
                f"{a['tokens']:,}" if a["tokens"] else "–",
                value_ci_text(ev["domain"]) if ev else "–",
                value_ci_text(ev["general"]) if ev else "–",
                pct_text(a["domain_vs_base"].d) if a["domain_vs_base"] else "–",
                pct_text(a["general_vs_base"].d) if a["general_vs_base"] else "–",
                fmt(-score if score is not None else a["domain_after"]),
                "**chosen**" if chosen == a["name"] else "",
            ]
        )
    tokens = next((a["tokens"] for a in arms if a["tokens"]), None)
    # corpus_ppl's items are checked once for the domain documents and WikiText-2's alike
    unpaired = [
        f"{ctx.link(a['eval_step'])} is not paired with the general model's evaluation: {a['domain_vs_base'].reason}"
        for a in arms
        if isinstance(a["domain_vs_base"], NotPaired)
    ]
    return [
        f"Learning-rate sweep: {len(arms)} short run{'s' if len(arms) > 1 else ''} with the base tokenizer"
        + (f", {tokens:,} tokens each" if tokens else "")
        + ". Held-out bpb and its 95% interval from each run's corpus_ppl evaluation (documents DAPT left out, "
        "every domain document pooled; WikiText-2 test); the change against the general model is paired "
        "document by document. "
        + (f"{domain_bpb.FALLBACK_NOTE} " if fallback else "")
        + "The choice reads the runs' own validation (training-validation column), before any evaluation:",
        "",
        table(
            [
                "run",
                "lr",
                "tokens",
                "held-out domain bpb",
                "WikiText-2 bpb",
                "domain vs general model",
                "WikiText-2 vs general model",
                "training-validation domain bpb",
                "",
            ],
            body,
        ),
        "",
        *(f"{line}." for line in unpaired),
        *([""] if unpaired else []),
    ]


def choice_text(ctx: Context, chip: str, choice: dict | None) -> str:
    if not choice:
        return (
            f"`{chip}` has no recorded choice of learning rate (its ledger entry predates `choose`, or it was not run)."
        )
    scores = ", ".join(f"{name} {-score:.3f}" for name, score in sorted(choice.get("scores", {}).items()))
    return (
        f"The chip model's DAPT ({ctx.link(chip)}) took `{' '.join(choice.get('overrides', []))}` from "
        f"{choice.get('winner')}: the lowest held-out domain bpb in the short runs' validation "
        f"(`{choice.get('by')}`: {scores})."
    )
