"""The headline rows of the merge study, from the paired tests of merge_section (held-out IFEval
prompts, held-out domain documents pooled): each verdict is power.verdict's, never a threshold on a score."""

from chipadapt.eval.paired import PairedDifference
from chipadapt.report import bracketed
from chipadapt.reproduce.report.merge_runs import DOMAIN, INSTRUCT
from chipadapt.reproduce.report.merge_tests import signed
from chipadapt.reproduce.report.pairs import NotPaired
from chipadapt.reproduce.report.power import (
    CONTRADICTS,
    NEEDS,
    NOT_MEASURED,
    NOT_RESOLVED,
    REPRODUCES,
    is_not_resolved,
    needed_size,
    not_paired_why,
    verdict,
)

RESTORES = ("ChipAlign restores instruction following", "up to +26.6% IFEval over the chip model")
KEEPS = ("ChipAlign keeps the chip model's domain ability", "domain knowledge retained by the merged model")
# The chip model's domain measures, each with the direction that is better and the items it pairs on.
DOMAIN_MEASURES = [
    (DOMAIN, "domain bpb", -1, "documents"),
    ("eda_script.call_f1", "EDA call F1", +1, "scripts"),
    ("rag_qa.rougeL_rag", "QA ROUGE-L (RAG)", +1, "questions"),
]
BEST_06 = ("Best ChipAlign lambda is 0.6", "0.6 (of 0.1-0.9)")
BEATS = ("ChipAlign beats the other merges", "ChipAlign ahead of linear/slerp/TA/TIES/DELLA on IFEval, domain kept")
TRADE_OFF = "a trade-off: better on one measure, worse on the other, each beyond noise"
UNITS = {INSTRUCT: "prompts", DOMAIN: "documents"}


def judged(d: PairedDifference | NotPaired | None, key: str, paper_sign: int) -> tuple[str, str]:
    return verdict(d, paper_sign, UNITS.get(key, "items"))


def combined(ifeval: tuple[str, str], domain: tuple[str, str]) -> tuple[str, str]:
    """One verdict from IFEval's and domain bpb's (each already signed by the paper's direction). The
    paper's claim is instruction following kept better at no domain cost, so IFEval decides: it holds
    when IFEval resolves ChipAlign's way and domain bpb does not resolve against it, and fails when
    either resolves against it without the other resolving for it (resolving opposite ways is a
    trade-off). A domain-only win is not enough: the cell then names the prompts IFEval would need.
    A measure not measured (no records, or runs that are not the same items) leaves the claim not measured
    unless the other contradicts it."""
    (v_if, _), (v_dom, _) = ifeval, domain
    named = (("IFEval", ifeval), ("domain bpb", domain))
    if NOT_MEASURED in (v_if, v_dom) and CONTRADICTS not in (v_if, v_dom):
        return NOT_MEASURED, "; ".join(f"{name}: {w}" for name, (v, w) in named if v == NOT_MEASURED)
    if {v_if, v_dom} == {REPRODUCES, CONTRADICTS}:
        return NOT_RESOLVED, TRADE_OFF
    if v_if == REPRODUCES:
        return REPRODUCES, ""
    if CONTRADICTS in (v_if, v_dom):
        return CONTRADICTS, ""
    why = "; ".join(f"{name}: {w}" for name, (_, w) in named if w)
    if v_dom == REPRODUCES:
        why = "better on domain bpb only" + (f"; {why}" if why else "")
    sizes = [f"{size} ({name})" for name, (v, _) in named if (size := needed_size(v))]
    return (f"{NOT_RESOLVED}{NEEDS}{' or '.join(sizes)}" if sizes else NOT_RESOLVED), why


def diff_text(d: PairedDifference | NotPaired | None, what: str) -> str:
    if not d:
        return f"{what} not measured" + (" (not paired)" if isinstance(d, NotPaired) else "")
    return f"{what} {signed(d.diff)} {bracketed(*d.ci, d.n, signed)} (p = {d.p:.2g}, n = {d.n})"


def domain_label(f: dict) -> str:
    return "domain bpb (mean of sources: runs from before domain_all.bpb)" if f.get("domain_fallback") else "domain bpb"


def restores_row(f: dict) -> list:
    tests, best = f["tests"].get("chip model") or {}, f["best"]
    d = tests.get(INSTRUCT)
    if isinstance(d, NotPaired):
        return [*RESTORES, diff_text(d, "IFEval instr."), NOT_MEASURED, not_paired_why(d)]
    if d is None:
        return [*RESTORES, "–", NOT_MEASURED, "no chip-model evaluation or per-item records to pair"]
    prompt = tests.get("ifeval.prompt_loose")
    prompts = f"{d.n} held-out prompts" if f.get("heldout_prompts") else f"{d.n} prompts (selection's included)"
    gain = f" ({100 * d.diff / d.a:+.1f}%)" if d.a else ""
    here = (
        f"lambda {best['lam']:g} vs chip model on {prompts}: IFEval instr. {d.a:.3f} → {d.b:.3f}{gain}; "
        + diff_text(d, "difference")
        + "; "
        + diff_text(prompt, "prompt-level")
    )
    return [*RESTORES, here, *judged(d, INSTRUCT, +1)]


def keeps_row(f: dict) -> list:
    """ChipAlign at its lambda against the chip model on each domain measure: worse on any beyond noise
    contradicts the claim; it reproduces when none is worse and one is better, each beyond noise. A measure
    whose runs are not the same items (NotPaired) is named, with why, and judges nothing."""
    tests, lam = f["tests"].get("chip model") or {}, f["best"]["lam"]
    listed = [(label, sign, unit, d) for key, label, sign, unit in DOMAIN_MEASURES if (d := tests.get(key)) is not None]
    if not listed:
        return [*KEEPS, "–", NOT_MEASURED, "no chip-model evaluation or per-item records to pair"]
    here = f"ChipAlign {lam:g} minus the chip model: " + "; ".join(diff_text(d, label) for label, _, _, d in listed)
    unpaired = "; ".join(f"{label}: {not_paired_why(d)}" for label, _, _, d in listed if not d)
    found = [entry for entry in listed if entry[3]]
    if not found:
        return [*KEEPS, here, NOT_MEASURED, unpaired]
    judged_each = [(label, verdict(d, sign, unit)) for label, sign, unit, d in found]
    worse = [label for label, (v, _) in judged_each if v == CONTRADICTS]
    better = [label for label, (v, _) in judged_each if v == REPRODUCES]
    if worse:
        why = f"worse on {' and '.join(worse)}, beyond noise" + (
            f"; better on {' and '.join(better)}" if better else ""
        )
        return [*KEEPS, here, CONTRADICTS, why]
    if better:
        return [*KEEPS, here, REPRODUCES, unpaired]
    sizes = [f"{size} ({label})" for label, (v, _) in judged_each if (size := needed_size(v))]
    return [*KEEPS, here, f"{NOT_RESOLVED}{NEEDS}{' or '.join(sizes)}" if sizes else NOT_RESOLVED, unpaired]


def best_lambda_row(f: dict) -> list:
    lams, best = f["lams"], f["best"]
    if len(lams) < 2 or best is None:
        run = ", ".join(f"{lam:g}" for lam in lams) or "none"
        return [
            *BEST_06,
            f"merged at lambda {run} only",
            NOT_MEASURED,
            "This variant does not sweep lambda; the full variant does.",
        ]
    others = sorted(((s, lam) for lam, s in f.get("scores", {}).items() if s is not None and lam != best["lam"]))
    runner_up = f"; next best {others[-1][1]:g} at {others[-1][0]:.2f}" if others else ""
    chosen = (
        f"lambda {best['lam']:g} chosen by merge_balance on "
        + (f"{f['selection_prompts']} screening prompts " if f["selection_prompts"] else "all IFEval prompts ")
        + f"(score {best['score']:.2f}{runner_up})"
        if best.get("score") is not None
        else f"lambda {best['lam']:g}"
    )
    test = f.get("lambda_test")
    if not test:
        return [*BEST_06, chosen + "; lambda 0.6 not run" * (0.6 not in lams), NOT_MEASURED, ""]
    rival, d = test["rival"], test.get("balance")
    items = "held-out items" if f.get("heldout_prompts") else "the items that chose it"
    here = f"{chosen}; 0.6 minus {rival:g} on {items}: " + "; ".join(
        (
            diff_text(test[INSTRUCT], "IFEval instr."),
            diff_text(test[DOMAIN], domain_label(f)),
            diff_text(d, "merge_balance"),
        )
    )
    # The paper: no lambda beats 0.6. Tested on merge_balance, the criterion that chose: neighbouring
    # lambdas trade one measure for the other, so each measure alone cannot rank them.
    v = verdict(d, +1, "prompts")
    if is_not_resolved(v[0]):
        v = (v[0], f"0.6 is within noise of {rival:g}: " + v[1])
    elif v[0] == REPRODUCES and abs(best["lam"] - 0.6) > 1e-9:
        v = (REPRODUCES, f"On the held-out items 0.6 does better than the {best['lam']:g} the screening chose.")
    if not f.get("heldout_prompts"):
        v = (
            v[0],
            " ".join(filter(None, [v[1], "No screening: the prompts tested are the ones that chose the lambda."])),
        )
    return [*BEST_06, here, *v]


def beats_rows(f: dict) -> list[list]:
    baselines = [m for m in f["tests"] if m not in ("instruct model", "chip model")]
    if not baselines:
        return [[*BEATS, "no baseline evaluated", NOT_MEASURED, ""]]
    rows = []
    for method in baselines:
        ifeval, domain = f["tests"][method].get(INSTRUCT), f["tests"][method].get(DOMAIN)
        setting = f.get("baselines", {}).get(method, "")
        here = (
            f"ChipAlign {f['best']['lam']:g} minus {method}"
            + (f" ({setting})" if setting and setting != "–" else "")
            + ": "
            + "; ".join((diff_text(ifeval, "IFEval instr."), diff_text(domain, domain_label(f))))
        )
        v = combined(judged(ifeval, INSTRUCT, +1), judged(domain, DOMAIN, -1))
        if v[1] == TRADE_OFF:
            balance = (f.get("balances") or {}).get(method)
            if balance:
                here += "; " + diff_text(balance, "merge_balance")
                v = settled_by_balance(balance)
            elif isinstance(balance, NotPaired):  # the trade-off stands; why merge_balance cannot settle it
                v = (v[0], f"{v[1]}; merge_balance: {not_paired_why(balance)}")
        elif is_not_resolved(v[0]) and f.get("angle"):
            geometry = f.get("geometry") if method == "linear" else None
            apart = (
                f"; at lambda {geometry['lam']:g} ChipAlign's merge lies {100 * geometry['chipalign']:.2g}% of the "
                "chip-instruct distance from linear's"
                if geometry and geometry.get("lam") is not None
                else ""
            )
            v = (
                v[0],
                v[1] + f" (mean angle between chip and instruct tensors {f['angle']['mean']:.2f} degrees{apart})",
            )
        twin = (f.get("same_lambda") or {}).get(method)
        if twin:
            here, v = with_same_lambda(here, v, method, twin, domain_label(f))
        rows.append([f"{BEATS[0]}: vs {method}", BEATS[1], here, *v])
    return rows


def settled_by_balance(balance: PairedDifference) -> tuple[str, str]:
    """A trade-off (each measure resolved, in opposite directions) is settled by merge_balance, the criterion
    that chose every merge's setting: the paper's claim is the better balance of the two measures."""
    v, why = verdict(balance, +1, "prompts")
    if v in (REPRODUCES, CONTRADICTS):
        side = "ChipAlign's" if v == REPRODUCES else "the baseline's"
        return v, f"{TRADE_OFF}; merge_balance, which chose every setting, favours {side}"
    return v, "; ".join(filter(None, [TRADE_OFF, f"merge_balance: {why}" if why else ""]))


def with_same_lambda(
    here: str, v: tuple[str, str], method: str, twin: dict, domain: str
) -> tuple[str, tuple[str, str]]:
    """A row whose two merges sit at different lambdas, with ChipAlign at the baseline's own lambda
    beside it: when that pair resolves nothing, what best against best resolved cannot be credited to the
    method (the lambdas differ too)."""
    at = f"at {method}'s lambda {twin['lam']:g}"
    here += f"; {at}: " + "; ".join((diff_text(twin[INSTRUCT], "IFEval instr."), diff_text(twin[DOMAIN], domain)))
    same = combined(judged(twin[INSTRUCT], INSTRUCT, +1), judged(twin[DOMAIN], DOMAIN, -1))
    note = ""
    if same[1] == TRADE_OFF:
        note = f"{at} the two merges trade one measure for the other, each beyond noise"
    elif v[0] in (REPRODUCES, CONTRADICTS) and is_not_resolved(same[0]):
        note = f"{at} the two merges are within noise, so the difference cannot be credited to the method"
    elif same[0] in (REPRODUCES, CONTRADICTS) and same[0] != v[0]:
        note = f"{at} ChipAlign does {'better' if same[0] == REPRODUCES else 'worse'} than {method}, beyond noise"
    return here, (v[0], "; ".join(filter(None, [v[1], note])))


def rows(f: dict) -> list[list]:
    if not f or not f.get("lams"):
        return [[*RESTORES, "–", NOT_MEASURED, "no ChipAlign merge in this run"]]
    if not f.get("best"):
        return [[*RESTORES, "–", NOT_MEASURED, "no lambda could be chosen: an end of the sweep is missing"]]
    return [restores_row(f), keeps_row(f), best_lambda_row(f), *beats_rows(f)]
