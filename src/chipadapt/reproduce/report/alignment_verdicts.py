"""Section 3's headline rows: EDA-script SFT, the chip model's instruction-following drift, and SteerLM's
attribute model and steering (verdicts.py gathers every section's rows)."""

import math

from chipadapt.reproduce.report import power
from chipadapt.reproduce.report.context import fmt
from chipadapt.reproduce.report.general_model import sized_model
from chipadapt.reproduce.report.pairs import diff_text
from chipadapt.reproduce.report.power import (
    CONTRADICTS,
    NEEDS,
    NOT_MEASURED,
    NOT_RESOLVED,
    REPRODUCES,
    Z95,
    joined,
)

EDA_SFT = ("SFT on EDA scripts improves script generation", "domain SFT helps EDA script generation")
DAPT_SFT = ("DAPT before SFT beats SFT alone", "ChipNeMo chat models beat the general ones on domain tasks")
DRIFT = (
    "The chip model follows instructions worse",
    "ChipAlign's premise: the chip model's IFEval below the instruct model's",
)
ATTRIBUTES = ("SteerLM attribute model ranks conversations as humans do", "attribute model on OASST/HelpSteer labels")
STEERS = ("SteerLM follows the attributes asked for", "replies track the requested quality/helpfulness")


def eda_rows(f: dict, size: str | None = None) -> list[list]:
    rows = []
    d, heldout = f.get("eda_sft"), f.get("sft_heldout")
    eda = f.get("eda", {})
    if d or eda.get("eval_sft"):
        loss = f"; held-out script loss {heldout[0]:.3f} → {heldout[1]:.3f}" if heldout else ""
        figure = (
            diff_text(d, "scripts")
            if d
            else "not paired"
            if d is not None
            else f"{fmt(eda.get('eval_base', {}).get('eda_script.call_f1'))} → "
        )
        here = f"API-call F1, chip model minus general model: {figure}{loss}"
        verdict, why = power.verdict(d, +1, "scripts")
        if verdict != REPRODUCES and heldout and heldout[1] < heldout[0]:
            why = joined(
                why,
                f"the loss on held-out scripts falls, but {sized_model(size)} does not yet write the reference "
                "OpenROAD calls (ChipNeMo: 7B-70B models)",
            )
        rows.append([*EDA_SFT, here, verdict, why])
    d = f.get("eda_dapt")
    if d is not None:  # a NotPaired too: its row says why
        verdict, why = power.verdict(d, +1, "scripts")
        figure = diff_text(d, "scripts") if d else "not paired"
        rows.append([*DAPT_SFT, f"API-call F1, DAPT + SFT minus general + SFT: {figure}", verdict, why])
    return rows


def drift_row(f: dict) -> list | None:
    prompt, instruction = f.get("ifeval_prompt"), f.get("ifeval_instruction")
    if prompt is None and instruction is None:
        return None
    here = (
        "; ".join(
            f"{label} {d.a:.3f} → {d.b:.3f}, {diff_text(d, 'prompts')}"
            for label, d in (("prompt-level", prompt), ("instruction-level", instruction))
            if d
        )
        or "not paired"
    )
    # McNemar's test over the prompts decides; the instruction-level permutation test (the merge study's
    # measure) is reported beside it, and named where it disagrees.
    verdict, why = power.verdict(prompt, -1, "prompts") if prompt else power.verdict(instruction, -1, "prompts")
    if prompt and instruction:
        other = power.verdict(instruction, -1, "prompts")
        if other[0].split(",")[0] != verdict.split(",")[0]:
            why = joined(why, f"instruction-level: {other[0]}")
    return [*DRIFT, f"chip model (DAPT + SFT) vs instruct model, {here}", verdict, why]


def spearman_interval(r: float, n: int) -> tuple[float, float]:
    """95% interval of a Spearman correlation over n pairs (Fisher z, Bonett-Wright variance)."""
    if n <= 3:
        return -1.0, 1.0
    z, se = math.atanh(max(min(r, 0.999999), -0.999999)), math.sqrt((1 + r * r / 2) / (n - 3))
    return math.tanh(z - Z95 * se), math.tanh(z + Z95 * se)


def pairs_for_spearman(r: float) -> int | None:
    """Pairs for the interval of a correlation as large as r to leave out 0."""
    if abs(r) < 1e-6:
        return None
    return math.ceil(3 + Z95**2 * (1 + r * r / 2) / math.atanh(min(abs(r), 0.999999)) ** 2)


# Said of a figure recorded before conversations were held out by group (code_versions.HELDOUT_VERSION 2).
BY_THREAD_ID = "Measured with threads held out by their own id (partly in-sample); not measured again."


def attribute_row(val: dict) -> list:
    undefined = sorted(name for name, m in val.items() if m["spearman"] is None)
    # An attribute whose labels or ratings are all equal has no rank correlation: it is named, not counted.
    val = {name: m for name, m in val.items() if m["spearman"] is not None}
    if not val:
        return [*ATTRIBUTES, f"Spearman undefined for every attribute: {', '.join(undefined)}", NOT_MEASURED, ""]
    # Recorded with the held-out groups (trees) it was measured over: its own interval, over resampled groups
    # (modules/attribute_figures.py). Recorded without: held out by thread id, the Fisher-z interval over them.
    grouped = all("groups" in m for m in val.values())
    spans = {
        name: tuple(m["spearman_ci"])
        if grouped and m.get("spearman_ci")
        else spearman_interval(m["spearman"], int(m["n"]))
        for name, m in val.items()
    }
    here = ", ".join(f"{name} {val[name]['spearman']:+.2f} [{lo:+.2f}, {hi:+.2f}]" for name, (lo, hi) in spans.items())
    better = sum(m["mae"] < m["baseline_mae"] for m in val.values())
    here = (
        f"Spearman against held-out human labels: {here}; MAE below the constant-mean baseline's on "
        f"{better} of {len(val)}"
        + (f"; undefined (labels or ratings all equal): {', '.join(undefined)}" if undefined else "")
    )
    above = sum(lo > 0 for lo, _ in spans.values())
    below = sum(hi < 0 for _, hi in spans.values())
    if grouped:
        units = ", ".join(sorted({f"{int(m['n'])} conversations from {int(m['groups'])} groups" for m in val.values()}))
        note = f"Not a paired test: one model's ratings against the labels (interval over held-out groups: {units})"
    else:
        note = (
            "Not a paired test: one model's ratings against the labels (Fisher-z interval over the conversations). "
            f"{BY_THREAD_ID}"
        )
    if above > len(val) / 2:
        verdict = REPRODUCES
        why = note + ("" if better > len(val) / 2 else "; it ranks them, but its scale is off the labels' (MAE)")
    elif below > len(val) / 2:
        verdict, why = CONTRADICTS, note
    else:
        # It reproduces when most attributes' intervals leave out 0: the weakest of the strongest majority
        # must resolve, so that attribute's correlation sizes what would resolve the finding. Attributes
        # are labelled on different conversations (OASST labels are sparse): its own count is the one to grow.
        ranked = sorted(val.items(), key=lambda kv: -kv[1]["spearman"])
        name, m = ranked[len(val) // 2]
        needed = pairs_for_spearman(m["spearman"]) if m["spearman"] > 0 else None
        # Over groups, Fisher-z's count is of independent units: as many groups (trees), not threads.
        unit = "independent groups (trees)" if grouped else "conversations"
        verdict = f"{NOT_RESOLVED}{NEEDS}about {needed:,} {unit}" if needed else NOT_RESOLVED
        why = (
            f"{note}; {above} of {len(val)} attributes resolved; a majority needs {name} ({m['spearman']:+.2f}) "
            f"resolved too; it has {int(m['n'])} labelled conversations now"
        )
    return [*ATTRIBUTES, here, verdict, why]


def steer_row(f: dict) -> list:
    gap = f["steer_quality_gap"]
    here = (
        f"rated quality {gap:+.2f}, helpfulness {f.get('steer_helpfulness_gap', 0):+.2f} "
        f"(high minus low setting, {f.get('steer_replies', '–')} replies each)"
    )
    # The probe's paired tests (steerlm/setting_figures.py): the low setting minus the high one over the same
    # prompts, turned here into high minus low. A record from before them has none.
    paired = {a: d for a, d in (f.get("steer_minus_first") or {}).items() if a in ("quality", "helpfulness") and d}
    if not paired:
        return [
            *STEERS,
            here,
            NOT_MEASURED,
            "The probe's record holds each setting's mean rating, not a paired test over its prompts: no interval "
            "(a rerun of steer_probe records one). Its ratings come from the attribute model above.",
        ]
    parts, above, below = [], 0, 0
    for a, d in paired.items():
        lo, hi = -d["ci"][1], -d["ci"][0]
        parts.append(f"{a} {-d['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] (p = {d['p']:.2g}, n = {d['n']} prompts)")
        above, below = above + (lo > 0), below + (hi < 0)
    here = f"high minus low setting, paired over the same prompts: {'; '.join(parts)}"
    verdict = REPRODUCES if above == len(paired) else CONTRADICTS if below == len(paired) else NOT_RESOLVED
    tests = sorted({d["test"] for d in paired.values()})
    return [
        *STEERS,
        here,
        verdict,
        f"Paired test over prompts ({', '.join(tests)}); the ratings come from the attribute model above, so "
        "they are as good as its ranking.",
    ]


def alignment_rows(f: dict, size: str | None = None) -> list[list]:
    f = f or {}
    rows = eda_rows(f, size)
    drift = drift_row(f)
    rows += [drift] if drift else []
    if f.get("attributes"):
        rows.append(attribute_row(f["attributes"]))
    if f.get("steer_quality_gap") is not None:
        rows.append(steer_row(f))
    return rows
