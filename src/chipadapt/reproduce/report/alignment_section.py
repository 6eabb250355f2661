"""Section 3: SFT of the DAPT model (and of the general model, to isolate DAPT's part), EDA script
generation before and after, and SteerLM: the attribute model, and whether the steered model's
replies follow the attributes asked for. The chip model (DAPT + SFT, `eval_sft`) and the general
model (`eval_base`) answer the same EDA prompts and IFEval prompts: their differences are paired."""

import matplotlib.pyplot as plt

from chipadapt.reproduce.report.context import Context, fmt, get, missing, table
from chipadapt.reproduce.report.pairs import between, diff_text

SUITE_MODELS = ["eval_base", "eval_dapt", "eval_sft", "eval_sft_base", "eval_steerlm"]
EDA_METRICS = [
    ("eda_script.syntax", "parses"),
    ("eda_script.call_f1", "API-call F1"),
    ("eda_script.arg_f1", "argument F1"),
    ("eda_script.all_calls", "all calls right"),
    ("eda_script.rougeL", "ROUGE-L"),
]


def val_losses(ctx: Context, name: str) -> list[list]:
    metrics = (ctx.read_json(name, "manifest.json") or {}).get("metrics", {})
    before, after = metrics.get("before") or {}, metrics.get("after") or {}
    return [
        [ctx.link(name), split, fmt(before.get(split, {}).get("loss")), fmt(after[split].get("loss"))]
        for split in after
    ]


def eda_plot(ctx: Context, names: list[str]):
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        res = ctx.results(name)
        ax.bar(
            [j + i * width for j in range(len(EDA_METRICS))],
            [get(res, k) or 0 for k, _ in EDA_METRICS],
            width,
            label=ctx.label(name),
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(EDA_METRICS))], [label for _, label in EDA_METRICS])
    ax.set_ylim(0, 1)
    ax.set_title("OpenROAD Python script generation (EDA-Corpus held-out prompts)")
    ax.legend(fontsize=8)
    return fig


def steerlm_part(ctx: Context) -> tuple[list[str], dict]:
    lines, facts = [], {}
    if ctx.has("attribute_model"):
        val = ctx.read_json("attribute_model", "manifest.json")["metrics"]["val"]
        # Spearman is null where the labels or the ratings are all equal (the record says why)
        rows = [
            [
                name,
                m["n"],
                m["mae"],
                m["baseline_mae"],
                "undefined" if m["spearman"] is None else f"{m['spearman']:+.3f}",
            ]
            for name, m in val.items()
        ]
        facts["attributes"] = val
        lines += [
            f"Attribute model ({ctx.link('attribute_model')}), on held-out OASST conversations with human labels; "
            "the baseline predicts each attribute's training mean:",
            "",
            table(["attribute", "n", "MAE", "baseline MAE", "Spearman"], rows),
            "",
        ]
    if ctx.has("steer_probe"):
        probe = ctx.read_json("steer_probe", "manifest.json")["metrics"]["by_setting"]
        attrs = list(probe[0]["mean_rating"])
        rows = [
            [
                ", ".join(f"{k}={v}" for k, v in p["setting"].items()),
                p["replies"],
                *[p["mean_rating"][a] for a in attrs],
            ]
            for p in probe
        ]
        lines += [
            f"Steering probe ({ctx.link('steer_probe')}): the SteerLM model answers held-out prompts under a high "
            "and a low attribute setting; the attribute model rates the replies:",
            "",
            table(["asked for", "replies", *attrs], rows),
            "",
        ]
        if len(probe) >= 2:
            hi, lo = probe[0]["mean_rating"], probe[1]["mean_rating"]
            facts["steer_quality_gap"] = hi.get("quality", 0) - lo.get("quality", 0)
            facts["steer_helpfulness_gap"] = hi.get("helpfulness", 0) - lo.get("helpfulness", 0)
            facts["steer_replies"] = probe[0]["replies"]
            facts["steer_minus_first"] = probe[1].get("minus_first")  # low minus high, paired over prompts
    return lines, facts


def drift_lines(paired: dict) -> list[str]:
    """The chip model against the general model on the same prompts (b - a: chip minus general)."""
    parts = [
        f"{label} {diff_text(paired[key], unit)}"
        for key, label, unit in (
            ("ifeval_prompt", "IFEval prompt-level (loose)", "prompts"),
            ("ifeval_instruction", "IFEval instruction-level (loose)", "prompts"),
            ("eda_sft", "EDA API-call F1", "scripts"),
        )
        if paired.get(key)
    ]
    if not parts:
        return []
    return ["Chip model minus general model, paired over the same prompts: " + "; ".join(parts) + ".", ""]


def section(ctx: Context) -> tuple[str, dict]:
    if not ctx.has("sft"):
        return missing("SFT", ["sft"]), {}
    lines = [
        "Validation loss on assistant tokens (nats/token) before and after fine-tuning; `eda_heldout` is the "
        "split of EDA-Corpus prompts that training left out and `eval=eda_script` scores:",
        "",
    ]
    rows = []
    for name in ("sft", "sft_base", "steerlm"):
        if ctx.has(name):
            rows += val_losses(ctx, name)
    lines += [table(["run", "split", "loss before", "loss after"], rows), ""]

    models = [n for n in SUITE_MODELS if ctx.results(n)]
    header = ["model", *[label for _, label in EDA_METRICS], "IFEval instr. (loose)", "IFEval prompt (loose)"]
    body = [
        [
            f"{ctx.label(n)} ({ctx.link(n)})",
            *[get(ctx.results(n), k) for k, _ in EDA_METRICS],
            get(ctx.results(n), "ifeval.instruction_loose"),
            get(ctx.results(n), "ifeval.prompt_loose"),
        ]
        for n in models
    ]
    prompts = get(ctx.results(models[0]), "ifeval.prompts") if models else None
    paired = {
        # what SFT on EDA scripts adds, and what DAPT adds before it (same prompts, item by item)
        "eda_sft": between(ctx, "eval_base", "eval_sft", "eda_script.call_f1"),
        "eda_dapt": between(ctx, "eval_sft_base", "eval_sft", "eda_script.call_f1"),
        # the chip model's drift away from instruction following (ChipAlign's premise)
        "ifeval_prompt": between(ctx, "eval_base", "eval_sft", "ifeval.prompt_loose"),
        "ifeval_instruction": between(ctx, "eval_base", "eval_sft", "ifeval.instruction_loose"),
    }
    if models:
        lines += [
            f"EDA script generation and instruction following, per model (IFEval: {prompts} prompts):",
            "",
            table(header, body),
            "",
            *drift_lines(paired),
            ctx.save_figure(eda_plot(ctx, models), "eda_scripts.png"),
            "",
        ]
    else:
        lines += [missing("EDA script generation per model", SUITE_MODELS), ""]
    facts = {m: {k: get(ctx.results(m), k) for k, _ in EDA_METRICS} for m in models}
    sft_metrics = ctx.read_json("sft", "manifest.json")["metrics"]
    heldout = (sft_metrics.get("before", {}).get("eda_heldout"), sft_metrics.get("after", {}).get("eda_heldout"))
    sft_heldout = (heldout[0]["loss"], heldout[1]["loss"]) if all(heldout) else None
    steer_lines, steer_facts = steerlm_part(ctx)
    lines += steer_lines
    return "\n".join(lines), {"eda": facts, "sft_heldout": sft_heldout, **paired, **steer_facts}
