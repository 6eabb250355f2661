"""Section 4: ChipAlign's geodesic merge over lambda, against linear, slerp, task arithmetic, TIES and
DELLA, each scored on the domain (held-out corpus bpb, EDA script API-call F1, domain QA with RAG)
and on instruction following (IFEval). Lambda 0 is the instruct model (eval_base), 1 the chip
model (eval_sft): the same suite, so the sweep's ends are measured, not assumed."""

import csv
import json

import matplotlib.pyplot as plt

from chipadapt.reproduce.report.context import Context, get, missing, paired, table

# (results key, label, higher is better)
DOMAIN = [
    ("corpus_ppl.domain_mean.bpb", "domain bpb", False),
    ("eda_script.call_f1", "EDA call F1", True),
    ("rag_qa.rougeL_rag", "QA ROUGE-L (RAG)", True),
]
INSTRUCT = ("ifeval.instruction_loose", "IFEval instr. (loose)", True)
METRICS = DOMAIN + [INSTRUCT]


def sweep_rows(ctx: Context, step: str) -> list[dict]:
    if not ctx.has(step):
        return []
    rows = []
    for job in sorted(p for p in ctx.folder(step).iterdir() if (p / "results.json").is_file()):
        summary = (
            json.loads((job / "model" / "merge_manifest.json").read_text()).get("summary", {})
            if (job / "model" / "merge_manifest.json").is_file()
            else {}
        )
        results = json.loads((job / "results.json").read_text())
        rows.append(
            {
                "method": summary.get("method"),
                "lam": summary.get("lam"),
                "folder": job,
                "results": results,
                **{key: get(results, key) for key, _, _ in METRICS},
            }
        )
    return rows


def endpoint(ctx: Context, step: str, lam: float) -> dict | None:
    results = ctx.results(step)
    if not results:
        return None
    return {
        "method": "chipalign",
        "lam": lam,
        "folder": ctx.folder(step),
        "results": results,
        "endpoint": step,
        **{key: get(results, key) for key, _, _ in METRICS},
    }


def angles(rows: list[dict]) -> dict | None:
    """Angle between the chip and the instruct tensor, over the tensors of one ChipAlign merge
    (merge_diagnostics.csv): near zero, the geodesic and the straight line between them coincide."""
    job = next(
        (
            r["folder"]
            for r in rows
            if not r.get("endpoint") and (r["folder"] / "model" / "merge_diagnostics.csv").is_file()
        ),
        None,
    )
    if job is None:
        return None
    with (job / "model" / "merge_diagnostics.csv").open() as handle:
        values = [float(r["angle_deg"]) for r in csv.DictReader(handle) if r.get("angle_deg") not in (None, "")]
    return {"mean": sum(values) / len(values), "max": max(values), "tensors": len(values)} if values else None


def score(rows: list[dict]) -> None:
    """Each metric min-max normalised over every merged model and both ends (1 = best seen); the domain
    score is the mean of the domain metrics, balance the mean of domain score and IFEval."""
    for key, _, higher in METRICS:
        values = [r[key] for r in rows if r[key] is not None]
        lo, hi = (min(values), max(values)) if values else (0, 1)
        for r in rows:
            v = r[key]
            r[f"n:{key}"] = None if v is None else ((v - lo) if higher else (hi - v)) / ((hi - lo) or 1.0)
    for r in rows:
        parts = [r[f"n:{key}"] for key, _, _ in DOMAIN if r[f"n:{key}"] is not None]
        r["domain_score"] = sum(parts) / len(parts) if parts else None
        r["balance"] = (
            None
            if r["domain_score"] is None or r[f"n:{INSTRUCT[0]}"] is None
            else (r["domain_score"] + r[f"n:{INSTRUCT[0]}"]) / 2
        )


def link(ctx: Context, row: dict) -> str:
    return ctx.link_folder(row["folder"], f"{row['method']} {row['lam']:g}")


def lambda_plot(ctx: Context, chipalign: list[dict], baselines: list[dict]):
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    for ax, (key, label, higher) in zip(axes, METRICS):
        pts = [(r["lam"], r[key]) for r in chipalign if r[key] is not None]
        ax.plot(*zip(*pts), marker="o", color="black", label="chipalign") if pts else None
        for method in sorted({r["method"] for r in baselines}):
            mp = sorted((r["lam"], r[key]) for r in baselines if r["method"] == method and r[key] is not None)
            if mp:
                ax.plot(*zip(*mp), marker="x", linestyle="--", label=method)
        ax.axvline(0.6, color="tab:green", alpha=0.3, linewidth=6)
        ax.set_xlabel("lambda (0 instruct, 1 chip)")
        ax.set_title(f"{label}{'' if higher else ' (lower better)'}", fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle("Merges over lambda; green band: ChipAlign's reported best (0.6)", fontsize=10)
    fig.tight_layout()
    return fig


def tradeoff_plot(ctx: Context, chipalign: list[dict], baselines: list[dict]):
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for method, rows, style in [("chipalign", chipalign, "o-")] + [
        (m, [r for r in baselines if r["method"] == m], "x--") for m in sorted({r["method"] for r in baselines})
    ]:
        rows = sorted(
            (r for r in rows if r["domain_score"] is not None and r[INSTRUCT[0]] is not None), key=lambda r: r["lam"]
        )
        if not rows:
            continue
        ax.plot([r[INSTRUCT[0]] for r in rows], [r["domain_score"] for r in rows], style, label=method)
        for r in rows:
            ax.annotate(
                f"{r['lam']:g}",
                (r[INSTRUCT[0]], r["domain_score"]),
                textcoords="offset points",
                xytext=(3, 3),
                fontsize=7,
            )
    ax.set_xlabel(INSTRUCT[1])
    ax.set_ylabel("domain score (mean of normalised bpb, EDA F1, QA ROUGE-L)")
    ax.set_title("Domain vs. instruction following (labels: lambda)")
    ax.legend(fontsize=8)
    return fig


def section(ctx: Context) -> tuple[str, dict]:
    chipalign = sweep_rows(ctx, "merge_chipalign")
    baselines = sweep_rows(ctx, "merge_baselines")
    if not chipalign:
        return missing("ChipAlign sweep", ["merge_chipalign"]), {}
    ends = [e for e in (endpoint(ctx, "eval_base", 0.0), endpoint(ctx, "eval_sft", 1.0)) if e]
    chipalign = sorted(chipalign + ends, key=lambda r: r["lam"])
    score(chipalign + baselines)
    header = ["merge", *[label for _, label, _ in METRICS], "domain score", "balance"]
    body = [
        [
            f"{'instruct' if r['lam'] == 0 else 'chip'} model, lambda {r['lam']:g} ({ctx.link(r['endpoint'])})"
            if r.get("endpoint")
            else link(ctx, r),
            *[r[key] for key, _, _ in METRICS],
            r["domain_score"],
            r["balance"],
        ]
        for r in chipalign
    ]
    by_method: dict[str, list[dict]] = {}
    for r in [r for r in chipalign if not r.get("endpoint")] + baselines:
        by_method.setdefault(r["method"], []).append(r)
    best = {
        m: max(scored, key=lambda r: r["balance"])
        for m, rows in by_method.items()
        if (scored := [r for r in rows if r["balance"] is not None])
    }

    def no_effect(rows: list[dict]) -> bool:
        # With a zero instruct task vector, TIES' and DELLA's disjoint mean divides the chip weight back
        # out: lambda does not change the merge (up to float rounding of lam * tau / lam), and a "best
        # lambda" would only name the first one run.
        scores = {tuple(None if r[key] is None else round(r[key], 6) for key, _, _ in METRICS) for r in rows}
        return len({r["lam"] for r in rows}) > 1 and len(scores) == 1

    best_rows = [
        [
            m,
            "any (no effect)" if no_effect(by_method[m]) else f"{r['lam']:g}",
            ", ".join(f"{lam:g}" for lam in sorted({x["lam"] for x in by_method[m]})),
            *[r[key] for key, _, _ in METRICS],
            r["domain_score"],
            r["balance"],
        ]
        for m, r in sorted(best.items(), key=lambda kv: -kv[1]["balance"])
    ]
    baseline_body = [
        [link(ctx, r), *[r[key] for key, _, _ in METRICS], r["domain_score"], r["balance"]]
        for r in sorted(baselines, key=lambda r: (r["method"], r["lam"]))
    ]

    chip = next((r for r in chipalign if r["lam"] == 1.0), None)
    at06 = next((r for r in chipalign if abs(r["lam"] - 0.6) < 1e-9), None)
    angle = angles(chipalign)
    facts = {
        "angle": angle,
        "best": best,
        "chip": chip,
        "instruct": next((r for r in chipalign if r["lam"] == 0.0), None),
        "at06": at06,
        "chipalign_rows": chipalign,
        # IFEval of the lambda-0.6 merge against the chip model, prompt by prompt
        "ifeval_paired": paired(chip["folder"], at06["folder"], INSTRUCT[0]) if chip and at06 else None,
    }
    if chip and chip[INSTRUCT[0]]:
        for name, r in (("gain06", at06), ("gain_best", best.get("chipalign"))):
            if r and r[INSTRUCT[0]] is not None:
                facts[name] = 100 * (r[INSTRUCT[0]] - chip[INSTRUCT[0]]) / chip[INSTRUCT[0]]
    text = [
        "Every merge is evaluated on the same suite as the models (section 6). Task arithmetic, TIES and DELLA take "
        "task vectors against `models.base`; the only common ancestor here is the instruct model itself, so the "
        "instruct task vector is zero: task arithmetic is then exactly linear interpolation (not run again), "
        "and TIES and DELLA reduce to adding the chip model's trimmed task vector to the instruct model, "
        "whatever lambda is: their "
        "disjoint mean divides each entry by the weight of the task vectors that agree on its sign, here the chip's "
        "alone, so lambda cancels. Their knobs are `merge.method.density` and `merge.method.scale`, not swept here. "
        "Normalised scores: each metric min-max scaled over every model in this section (1 = best seen).",
        "",
        *(
            [
                f"Angle between chip and instruct weights over the {angle['tensors']} merged tensors: "
                f"mean {angle['mean']:.2f} degrees, max {angle['max']:.2f} (from merge_diagnostics.csv); "
                "near zero, geodesic and linear interpolation nearly coincide.",
                "",
            ]
            if angle
            else []
        ),
        "ChipAlign over lambda:",
        "",
        table(header, body),
        "",
        "Every method at its best lambda (highest balance of domain score and IFEval) among the lambdas it was run at:",
        "",
        table(
            ["method", "best lambda", "lambdas run", *[label for _, label, _ in METRICS], "domain score", "balance"],
            best_rows,
        ),
        "",
        *(
            ["The other merges at every lambda run:", "", table(header, baseline_body), ""]
            if len(baselines) > len({r["method"] for r in baselines})
            else []
        ),  # only when some method ran at several lambdas
        ctx.save_figure(lambda_plot(ctx, chipalign, baselines), "merge_lambda.png"),
        "",
        ctx.save_figure(tradeoff_plot(ctx, chipalign, baselines), "merge_tradeoff.png"),
    ]
    return "\n".join(text), facts
