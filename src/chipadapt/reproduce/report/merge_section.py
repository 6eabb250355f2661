"""Section 4: ChipAlign's geodesic merge over lambda against linear, slerp, TIES and DELLA, each
baseline at the setting its screening chose and ChipAlign at the lambda the same criterion picks on
the same prompts; every figure with its 95% interval, and paired tests of ChipAlign at its best
against each baseline at its best and against both ends, on the IFEval prompts that chose nothing."""

from chipadapt.eval.paired import EXACT_MAX_ITEMS
from chipadapt.report import bracketed, unbounded, why_no_interval
from chipadapt.reproduce.report import domain_bpb
from chipadapt.reproduce.report.context import Context, fmt, missing, table
from chipadapt.reproduce.report.merge_geometry import geometry_text, slerp_note, sweep_geometry
from chipadapt.reproduce.report.merge_plots import balance_plot, lambda_plot
from chipadapt.reproduce.report.merge_runs import (
    BASELINES,
    CHIPALIGN,
    CHIPALIGN_BEST,
    DOMAIN,
    INSTRUCT,
    SCREENS,
    SUITE,
    Run,
    angles,
    attach_rest,
    balance,
    baseline_runs,
    chipalign_rest,
    chipalign_runs,
    endpoints,
    ifeval_ids,
    screen_rows,
    screening_ids,
    setting,
)
from chipadapt.reproduce.report.merge_tests import (
    balance_between,
    compare_suite,
    end_values,
    ends_ifeval_gap,
    same_lambda,
    signed,
)
from chipadapt.reproduce.report.pairs import NotPaired
from chipadapt.reproduce.report.power import NOT_MEASURED, not_paired_why

LABELS = {key: label for key, label, _ in SUITE}
KNOB_NAMES = {"merge.lam": "lambda", "merge.method.density": "density", "merge.method.scale": "scale"}
PAPER_LAMBDA = 0.6


def with_ci(run: Run, key: str) -> str:
    """`0.412 [0.301, 0.530]`; an unbounded end as -inf/+inf; no interval: the reason its `_ci_method`
    gives (`0.412 (interval n/a: n=4, too few)`), else the bare value."""
    value, ci = run.value(key), run.ci(key)
    if value is None:
        return "–"
    why = why_no_interval(run.ci_method(key))
    if ci and not (why and unbounded(ci)):
        return f"{fmt(value)} {bracketed(*ci, None, fmt)}"
    return f"{fmt(value)} {why}" if why else fmt(value)


def link(ctx: Context, run: Run) -> str:
    return ctx.link_folder(run.folder, run.name)


def curve_table(ctx: Context, curve: list[Run], scores: dict[float, float | None], best: Run | None) -> str:
    rows = [
        [
            link(ctx, r),
            *[with_ci(r, key) for key, _, _ in SUITE],
            f"{fmt(scores.get(r.lam))}{' (chosen)' if r is best else ''}",
        ]
        for r in curve
    ]
    return table(["model", *LABELS.values(), "merge_balance"], rows)


def baselines_table(ctx: Context, baselines: dict[str, Run]) -> str:
    rows = [
        [
            ctx.link_folder(run.folder, method),
            setting(ctx, method),
            *[with_ci(run, key) for key, _, _ in SUITE],
            fmt((ctx.ledger.get(BASELINES[method], {}).get("choice") or {}).get("score")),
        ]
        for method, run in baselines.items()
    ]
    return table(["merge", "chosen setting", *LABELS.values(), "merge_balance (screening)"], rows)


def screening_part(ctx: Context, n_prompts: int) -> list[str]:
    lines = []
    for step in SCREENS:
        knobs, rows = screen_rows(ctx, step)
        if not rows:
            lines += [missing(f"Screening `{step}`", [step]), ""]
            continue
        body = [
            [
                r.method,
                *[r.knobs.get(k, "–") for k in knobs],
                domain_bpb.value(r.results),
                r.results.get("ifeval", {}).get("instruction_loose"),
                r.score,
                "**chosen**" if r.chosen else "",
                ctx.link_folder(r.folder, r.folder.relative_to(ctx.out).as_posix()),
            ]
            for r in rows
        ]
        header = [
            "method",
            *[KNOB_NAMES.get(k, k) for k in knobs],
            "domain bpb",
            f"IFEval instr. ({n_prompts} prompts)",
        ]
        lines += [
            f"Screening `{step}` ({ctx.link(step)}):",
            "",
            table([*header, "merge_balance", "", "record"], body),
            "",
        ]
    return lines


def choose_best(merged: list[Run], scores: dict[float, float | None]) -> Run | None:
    """The highest merge_balance (first on ties, as choices.choose); a lone job is its own best."""
    scored = [r for r in merged if scores.get(r.lam) is not None]
    if scored:
        return max(scored, key=lambda r: scores[r.lam])
    return merged[0] if len(merged) == 1 else None


def not_measured(d: NotPaired | None) -> str:
    """The test cell of a comparison with no difference: why, where the runs' items are not the same items."""
    return f"{NOT_MEASURED}: {not_paired_why(d)}" if isinstance(d, NotPaired) else NOT_MEASURED


def tests_table(best: Run, tests: dict[str, dict]) -> str:
    rows = []
    for other, by_key in tests.items():
        for key, d in by_key.items():
            if not d:
                rows.append([f"chipalign {best.lam:g} − {other}", LABELS[key], *["–"] * 6, not_measured(d)])
                continue
            rows.append(
                [
                    f"chipalign {best.lam:g} − {other}",
                    LABELS[key],
                    d.a,
                    d.b,
                    signed(d.diff),
                    bracketed(*d.ci, d.n, signed),
                    f"{d.p:.2g}",
                    str(d.n),
                    d.test,
                ]
            )
    return table(["comparison", "metric", "other", "chipalign", "difference", "95% interval", "p", "n", "test"], rows)


def slerp_skipped(ctx: Context, geometry: dict | None) -> str | None:
    """Why this variant leaves slerp out, where the sweep's geometry says (merge_geometry.slerp_note)."""
    return slerp_note(geometry) if geometry and BASELINES["slerp"] not in ctx.steps else None


def same_lambda_part(twins: dict[str, dict], ifeval_note: str) -> list[str]:
    """The interpolation baselines against ChipAlign at their own lambda (merge_tests.same_lambda)."""
    if not twins:
        return []
    rows = [
        [f"chipalign {t['lam']:g} − {method} {t['lam']:g}", LABELS[key], d.a, d.b, signed(d.diff)]
        + [bracketed(*d.ci, d.n, signed), f"{d.p:.2g}", str(d.n), d.test]
        if d
        else [f"chipalign {t['lam']:g} − {method} {t['lam']:g}", LABELS[key], *["–"] * 6, not_measured(d)]
        for method, t in twins.items()
        for key, d in t.items()
        if key != "lam"
    ]
    return [
        "Best against best also compares lambdas: ChipAlign's sweep is finer than the screening's grid. At the "
        "lambda each interpolation baseline chose, ChipAlign's sweep job against it compares the methods alone "
        f"({ifeval_note}; difference = ChipAlign minus the other):",
        "",
        table(["comparison", "metric", "other", "chipalign", "difference", "95% interval", "p", "n", "test"], rows),
        "",
    ]


def paper_lambda_test(
    merged: list[Run],
    scores: dict,
    best: Run | None,
    tests: dict[str, dict],
    exclude: frozenset[str],
    ifeval_scale: float | None = None,
) -> dict | None:
    """The paper's lambda (0.6) against its rival on the held-out items: the lambda chosen, or, when 0.6
    is the one chosen, the runner-up; on both measures and on merge_balance (0.6 minus the rival, its
    IFEval share scaled as the choice scaled it: `ifeval_scale`)."""
    paper = next((r for r in merged if abs(r.lam - PAPER_LAMBDA) < 1e-9), None)
    ranked = sorted((r for r in merged if scores.get(r.lam) is not None), key=lambda r: -scores[r.lam])
    rival = (ranked[1] if len(ranked) > 1 else None) if best is paper else best
    if paper is None or rival is None:
        return None
    pair = compare_suite(rival, paper, [INSTRUCT, DOMAIN], exclude)
    instruct, chip = end_values(tests, "instruct model"), end_values(tests, "chip model")
    return {
        "rival": rival.lam,
        **pair,
        "balance": balance_between(pair[INSTRUCT], pair[DOMAIN], instruct, chip, ifeval_scale),
    }


def rest_note(ctx: Context, best: Run | None, rest: Run | None) -> str:
    """Where the sweep measured only part of the suite: which lambda has the rest, from where, and whether
    that is still the lambda chosen (a sweep rerun since can choose another)."""
    if rest is None:
        return ""
    if best is not None and best.rest == rest.folder:
        return (
            f" The sweep measures every lambda on what this choice reads (domain bpb and IFEval); the rest of the "
            f"suite ran at the lambda it chose, {rest.lam:g} ({ctx.link(CHIPALIGN_BEST)}: the same merge, chosen by "
            "the same criterion on the same prompts), as neighbouring lambdas are near-identical models."
        )
    return (
        f" **{ctx.link(CHIPALIGN_BEST)} is out of date**: it ran the rest of the suite at lambda {rest.lam:g}, but "
        f"the sweep now chooses {'nothing' if best is None else f'{best.lam:g}'}, so its figures are left out "
        f"(rerun it: `python reproduce.py force=[{CHIPALIGN_BEST}]`)."
    )


def section(ctx: Context) -> tuple[str, dict]:
    merged, ends, baselines = chipalign_runs(ctx), endpoints(ctx), baseline_runs(ctx)
    if not merged and not baselines:
        return missing("Merge study", [CHIPALIGN, *BASELINES.values()]), {}
    curve = sorted([*ends.values(), *merged], key=lambda r: r.lam)
    screen = screening_ids(ctx)
    # ChipAlign's lambda, chosen as the baselines' settings were: merge_balance on the screening prompts.
    scores = {r.lam: balance(ctx, r.folder, screen or None) for r in curve}
    best = choose_best(merged, scores)
    rest = chipalign_rest(ctx)
    if best is not None and rest is not None and abs(best.lam - rest.lam) < 1e-9:
        attach_rest(best, rest)
    heldout = (ifeval_ids(best.folder) - screen) if best else set()
    exclude = frozenset(screen) if heldout else frozenset()  # nothing left out: every prompt, said so
    keys = [key for key, _, _ in SUITE]
    others = [(r.method + " model", r) for r in ends.values()] + list(baselines.items())
    tests = {name: compare_suite(run, best, keys, exclude) for name, run in others} if best else {}
    scale = ends_ifeval_gap(ends.get(0.0), ends.get(1.0))
    lambda_test = paper_lambda_test(merged, scores, best, tests, exclude, scale)
    instruct_end, chip_end = end_values(tests, "instruct model"), end_values(tests, "chip model")
    # ChipAlign minus each baseline on merge_balance: what decides when the two measures disagree.
    balances = {
        m: balance_between(tests[m].get(INSTRUCT), tests[m].get(DOMAIN), instruct_end, chip_end, scale)
        for m in baselines
        if m in tests
    }
    twins = same_lambda(merged, baselines, best, exclude)
    angle = angles(merged)
    geometry = sweep_geometry(merged, best)
    fallback = domain_bpb.falls_back([r.results for r in [*curve, *baselines.values()]])
    n_screen = len(screen)
    facts = {
        "angle": angle,
        "geometry": geometry,
        "lams": [r.lam for r in merged],
        "best": {"lam": best.lam, "score": scores.get(best.lam)} if best else None,
        "scores": {lam: s for lam, s in scores.items() if lam not in (0.0, 1.0)},
        "selection_prompts": n_screen,
        "heldout_prompts": len(heldout) if n_screen else 0,  # without screening every prompt chose
        "tests": tests,
        "lambda_test": lambda_test,
        "balances": balances,
        "same_lambda": twins,
        "baselines": {m: setting(ctx, m) for m in baselines},
        "domain_fallback": fallback,
    }
    selection = (
        f"the same {n_screen} IFEval prompts the baselines' screening scored"
        if screen
        else "all IFEval prompts (no screening step in this run)"
    )
    ifeval_note = (
        f"IFEval on the {len(heldout)} prompts that chose nothing (all prompts minus the {n_screen} screening prompts)"
        if heldout and n_screen
        else f"IFEval on all {len(heldout)} prompts (no screening step in this run)"
        if heldout
        else "IFEval on every prompt: this variant evaluates no prompt beyond the screening's, so these include "
        "the prompts the settings were chosen on"
    )
    text = [
        f"Lambda 0 is the instruct model ({ctx.link('eval_base')}), 1 the chip model, DAPT + SFT "
        f"({ctx.link('eval_sft')}); ChipAlign's merges in between ({ctx.link(CHIPALIGN)}) and each baseline at the "
        "setting its screening chose are evaluated on the same suite"
        + (" (ChipAlign's lambdas on domain bpb and IFEval, the rest at the lambda chosen)" if rest else "")
        + ". Task vectors are taken against the instruct "
        "model, the only common ancestor here: task arithmetic is then exactly linear interpolation (not run "
        "twice), and TIES and DELLA's lambda has no effect, so they are screened over density and scale. "
        "Every merge takes the chip model's tokenizer and chat template (merge.py copies them from `models.chip`), "
        "so lambda 0 is prompted with the instruct model's own template and every merge with the chip model's. "
        "Intervals are 95% (results.json: Clopper-Pearson for prompt-level IFEval and parses, the sign-flip "
        "test over items inverted otherwise, none under 6 items). Domain bpb is corpus_ppl's `domain_all.bpb`, "
        "every held-out domain document pooled. "
        "Against each baseline, ChipAlign reproduces the paper when it follows more held-out prompts without a "
        "domain bpb loss beyond noise, and contradicts it when the baseline is as good on one measure and better "
        "on the other; when each merge is better on one measure beyond noise, neither dominates, and the paired "
        "`merge_balance` difference (the criterion that chose every setting) decides."
        + (f" {domain_bpb.FALLBACK_NOTE}" if fallback else ""),
        "",
        *(
            [
                f"Angle between chip and instruct weights over the {angle['tensors']} merged tensors: mean "
                f"{angle['mean']:.2f} degrees, max {angle['max']:.2f} (merge_diagnostics.csv of a ChipAlign merge); "
                "the closer to zero, the more nearly geodesic and linear interpolation coincide.",
                "",
            ]
            if angle
            else []
        ),
        *([geometry_text(geometry), ""] if geometry else []),
        "### ChipAlign over lambda",
        "",
        *(
            [
                curve_table(ctx, curve, scores, best),
                "",
                f"ChipAlign's lambda is chosen as the baselines' settings are: `merge_balance` (half the share of the "
                "domain-bpb gap from the instruct to the chip model that a merge closes, plus half the share of the "
                "IFEval instruction-level gap it keeps, each gap the ends' over every item both scored; the chip "
                "model scores 0.5, the instruct model about 0.5 on a subset of prompts), "
                f"on {selection}. "
                + (
                    f"Chosen: **lambda {best.lam:g}** (score {fmt(scores.get(best.lam))})."
                    if best
                    else "No lambda could be scored (an end of the sweep is missing)."
                )
                + rest_note(ctx, best, rest),
            ]
            if merged
            else [missing("ChipAlign sweep", [CHIPALIGN])]
        ),
        "",
        "### The baselines at their best",
        "",
        baselines_table(ctx, baselines) if baselines else missing("Baselines", list(BASELINES.values())),
        "",
        *([note, ""] if (note := slerp_skipped(ctx, geometry)) else []),
        ctx.save_figure(balance_plot(curve, baselines, best, fallback), "merge_balance.png"),
        "",
        ctx.save_figure(lambda_plot(curve, baselines), "merge_lambda.png"),
        "",
        "### Screening",
        "",
        (
            f"Each baseline is screened on held-out domain bpb and the first {n_screen} IFEval prompts, and run on "
            "the full suite at the setting with the highest `merge_balance` (the ledger's record of the choice, "
            "`runs/steps.json`)."
            if n_screen
            else "No screening step has finished in this run."
        ),
        "",
        *screening_part(ctx, n_screen),
        "### Paired tests",
        "",
    ]
    if tests:
        text += [
            f"ChipAlign at lambda {best.lam:g} against each baseline at its best and against both ends, item by item: "
            f"{ifeval_note}; prompt-level by McNemar's test (Tango's interval), "
            "instruction-level by the paired permutation test. "
            + (
                "Domain bpb: domain_mean.bpb where a run predates domain_all.bpb, by the paired permutation "
                "test stratified by source; "
                if fallback
                else "Domain bpb: corpus_ppl's domain_all.bpb, every held-out domain document pooled, by the paired "
                "permutation test over documents (unlike the prompts, these documents also took part in choosing the "
                "settings: too few to split, so a small selection bias remains in the domain half); "
            )
            + "WikiText-2 is not part of it. The others by the paired permutation test (McNemar for parses): "
            f"exact over {EXACT_MAX_ITEMS} items or fewer, over 2,000 seeded random swaps above (each row "
            "names its test). "
            "Difference = ChipAlign minus the other.",
            "",
            tests_table(best, tests),
            "",
            *same_lambda_part(twins, ifeval_note),
        ]
    else:
        text += ["_Paired tests: no ChipAlign merge to test._", ""]
    return "\n".join(text), facts
