"""The headline table: each paper finding, the figure measured here, and whether it reproduces.

Where both runs wrote per-item files, a difference counts only when its paired 95% interval (McNemar's
exact test or the paired bootstrap over the same prompts or questions, eval/paired.py) leaves out 0;
otherwise it is "within noise", not a result. Runs without per-item files fall back to twice the
standard error of a difference of two independent proportions.
The reasons given where a finding does not reproduce are facts of this setup, not guesses about it.
"""

import math

from chipadapt.reproduce.report.context import fmt, paired_text

YES, PARTLY, NO, NOISE, NOT_RUN = "reproduces", "partly", "does not reproduce", "within noise", "not run"
F1_NOISE = 0.05  # EDA API-call F1 over 16 scripts or fewer: smaller differences are not counted
BALANCE_NOISE = 0.05  # merge balance scores (0-1) closer than this are not a ranking
ROUGE_NOISE = 0.03  # mean ROUGE-L change over 16 QA answers or fewer: smaller ones are not counted
MCQ_CHANCE = 0.25  # four choices per MMLU question


def binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-9) / max(n, 1))


def difference(a: float, b: float, n: int) -> tuple[float, bool]:
    """a - b and whether it exceeds twice the standard error of a difference of two proportions over n items."""
    se = math.sqrt(binomial_se(a, n) ** 2 + binomial_se(b, n) ** 2)
    return a - b, abs(a - b) > 2 * se


def tokenizer_row(f: dict) -> list:
    if not f:
        return ["Domain-adapted tokenizer", "1.6-3.3% fewer domain tokens, general unchanged", "–", NOT_RUN, ""]
    held = f.get("domain_held_out")
    ok = f["domain_in_sample"] > 0 and (held is None or held > 0) and abs(f["general_in_sample"]) < 1.0
    here = (
        f"{f['domain_in_sample']:.1f}% fewer on the corpus, "
        f"{fmt(held, 1)}-{fmt(f.get('domain_held_out_max'), 1)}% on unseen RTL/scripts; "
        f"general {abs(f['general_in_sample']):.2f}% (WikiText-2/IFEval at most {fmt(f.get('general_held_out'), 2)}%)"
    )
    why = (
        (
            "Larger savings than ChipNeMo's: 4,000 tokens chosen for a 16 MB corpus of six repositories and added to a "
            "49k vocabulary (ChipNeMo: LLaMA2's 32k vocabulary and a far broader 24B-token corpus), "
            "so each new token is more specific."
        )
        if f["domain_in_sample"] > 3.3
        else ""
    )
    return ["Domain-adapted tokenizer", "1.6-3.3% fewer domain tokens, general unchanged", here, YES if ok else NO, why]


LARGE_LR = 1e-4  # ChipNeMo's ablation: 5e-6 against a learning rate 10-60x larger


def dapt_rows(f: dict, chip: str, models: dict, arm_evals: dict[str, str], n_ifeval: int) -> list[list]:
    rows = []
    if not f:
        return [["DAPT lowers domain perplexity", "domain ppl down, general ability kept", "–", NOT_RUN, ""]]
    run = next((r for r in f["rows"] if r["name"] == chip), f["rows"][0])
    ok = run["domain_change"] < 0
    rows.append(
        [
            "DAPT lowers domain perplexity",
            "lower domain perplexity after DAPT",
            f"{run['name']}: domain bpb {run['domain_change']:+.1f}%, WikiText-2 {run['general_change']:+.1f}% "
            f"after {run['tokens']:,} tokens",
            YES if ok else NO,
            "" if ok else "Tens of thousands of tokens, not billions: too few steps to move a 135M model.",
        ]
    )
    arm = f["base_arm"]
    if len(arm) >= 2 and max(arm) < LARGE_LR:
        rows.append(
            [
                "Large DAPT learning rate hurts",
                "a large lr degraded general ability; 5e-6 kept it",
                f"learning rates {', '.join(f'{lr:g}' for lr in sorted(arm))} only",
                NOT_RUN,
                "This variant has no large-lr arm; the full variant runs 3e-4.",
            ]
        )
    elif len(arm) >= 2:
        lo, hi = min(arm), max(arm)
        ev_lo, ev_hi = (
            models.get(arm_evals.get(arm[lo]["name"], ""), {}),
            models.get(arm_evals.get(arm[hi]["name"], ""), {}),
        )
        if_lo, if_hi = ev_lo.get("ifeval.instruction_loose"), ev_hi.get("ifeval.instruction_loose")
        # General ability: WikiText-2 bpb, or instruction following where the drop is beyond noise.
        ifeval_drop = (
            if_lo is not None and if_hi is not None and difference(if_lo, if_hi, n_ifeval)[1] and if_hi < if_lo
        )
        worse = arm[hi]["general_change"] > arm[lo]["general_change"] or ifeval_drop
        here = (
            f"WikiText-2 bpb {arm[lo]['general_change']:+.1f}% at lr {lo:g} "
            f"vs {arm[hi]['general_change']:+.1f}% at {hi:g} "
            f"(domain {arm[lo]['domain_change']:+.1f}% vs {arm[hi]['domain_change']:+.1f}%); IFEval instr. "
            f"{fmt(ev_lo.get('ifeval.instruction_loose'))} vs {fmt(ev_hi.get('ifeval.instruction_loose'))}"
        )
        rows.append(
            [
                "Large DAPT learning rate hurts",
                "a large lr degraded general ability; 5e-6 kept it",
                here,
                YES if worse else NO,
                ""
                if worse
                else "After tens of thousands of tokens even the large lr improves WikiText-2 (the blend's 9% "
                "general text is Wikipedia too), and the IFEval difference is within noise; ChipNeMo saw the damage "
                "over billions of tokens.",
            ]
        )
    aug, same = f.get("aug"), f.get("same_lr_base")
    if aug and same:
        d = aug["domain_after"] - same["domain_after"]
        rows.append(
            [
                "Augmented tokenizer costs nothing after DAPT",
                "no loss in domain or general quality (ChipNeMo: little difference)",
                f"domain bpb after DAPT {fmt(aug['domain_after'])} (augmented) vs {fmt(same['domain_after'])} (base); "
                f"before DAPT {fmt(aug['domain_before'])} vs {fmt(same['domain_before'])}",
                YES if d <= 0.01 else NO,
                ""
                if d <= 0.01
                else "The 4,000 new embedding rows start as sub-token means; too few DAPT steps to train them "
                "(ChipNeMo trained 24B tokens).",
            ]
        )
    return rows


def alignment_rows(f: dict, models: dict) -> list[list]:
    eda = (f or {}).get("eda", {})
    rows = []
    base, sft, sft_base = (eda.get(n, {}).get("eda_script.call_f1") for n in ("eval_base", "eval_sft", "eval_sft_base"))
    heldout = (f or {}).get("sft_heldout")
    if base is not None and sft is not None:
        loss = f"; held-out script loss {heldout[0]:.3f} → {heldout[1]:.3f}" if heldout else ""
        if sft - base > F1_NOISE:
            verdict, why = YES, ""
        elif heldout and heldout[1] < heldout[0]:
            verdict, why = (
                PARTLY,
                (
                    "The loss on held-out scripts falls, but a few SFT steps on a 135M model do not yet make it "
                    "write the reference OpenROAD calls (ChipNeMo: 7B-70B models)."
                ),
            )
        else:
            verdict, why = NO, "A few SFT steps on a 135M model."
        rows.append(
            [
                "SFT on EDA scripts improves script generation",
                "domain SFT helps EDA script generation",
                f"API-call F1 {fmt(base)} (general model) → {fmt(sft)} (DAPT + SFT){loss}",
                verdict,
                why,
            ]
        )
        if sft_base is not None:
            diff = sft - sft_base
            verdict = NOISE if abs(diff) <= F1_NOISE else YES if diff > 0 else NO
            rows.append(
                [
                    "DAPT before SFT beats SFT alone",
                    "ChipNeMo chat models beat the general ones on domain tasks",
                    f"API-call F1 {fmt(sft)} (DAPT + SFT) vs {fmt(sft_base)} (general + SFT)",
                    verdict,
                    ""
                    if verdict == YES
                    else "The DAPT blend has little OpenROAD Python in it (RTL and documentation), "
                    "and tens of thousands of DAPT tokens are far from ChipNeMo's 24B.",
                ]
            )
    beating = (f or {}).get("attributes_beating_baseline")
    if beating:
        better, total = beating
        rows.append(
            [
                "SteerLM attribute model predicts human labels",
                "attribute model trained on OASST/HelpSteer labels",
                f"{better} of {total} attributes below the constant-mean baseline's MAE; mean Spearman "
                f"{f.get('attribute_spearman', 0):+.2f}",
                YES if better > total / 2 else PARTLY if f.get("attribute_spearman", 0) > 0.1 else NO,
                ""
                if better > total / 2
                else "A few optimizer steps over a hundred labelled OASST threads: the predictions rank the "
                "conversations somewhat (positive Spearman) but are not yet on the labels' scale.",
            ]
        )
    gap = (f or {}).get("steer_quality_gap")
    if gap is not None:
        rater_ok = not beating or beating[0] > beating[1] / 2
        verdict = (YES if gap > 0 else NO) if rater_ok else NOISE
        rows.append(
            [
                "SteerLM follows the attributes asked for",
                "replies track the requested quality/helpfulness",
                f"rated quality {gap:+.2f}, helpfulness {f.get('steer_helpfulness_gap', 0):+.2f} "
                "(high minus low setting)",
                verdict,
                ""
                if verdict == YES
                else "The attribute model that rates the replies does not beat a constant, so its "
                "ratings cannot tell the settings apart; a few hundred labelled conversations "
                "and a few steps of steering.",
            ]
        )
    return rows


def merge_rows(f: dict, n_ifeval: int) -> list[list]:
    if not f or not f.get("chip"):
        return [
            [
                "ChipAlign restores instruction following",
                "up to +26.6% IFEval over the chip model; best at lambda 0.6",
                "–",
                NOT_RUN,
                "",
            ]
        ]
    chip, at06 = f["chip"], f.get("at06")
    best = f["best"].get("chipalign")
    key = "ifeval.instruction_loose"
    rows = []
    if at06 and chip[key] is not None:
        d = f.get("ifeval_paired")
        diff, real = (d.diff, d.verdict != NOISE) if d else difference(at06[key], chip[key], n_ifeval)
        verdict = (YES if diff > 0 else NO) if real else NOISE
        rows.append(
            [
                "ChipAlign restores instruction following",
                "up to +26.6% IFEval over the chip model",
                f"IFEval instr. {fmt(chip[key])} (chip) → {fmt(at06[key])} at lambda 0.6 ({f.get('gain06', 0):+.1f}%)"
                + (f"; {paired_text(d)}" if d else ""),
                verdict,
                ""
                if verdict == YES
                else "Chip and instruct model differ little (a few dozen training steps apart), "
                + (
                    f"and the paired interval over {d.n} prompts covers 0."
                    if d
                    else f"and {n_ifeval} IFEval prompts give a standard error of about "
                    f"{binomial_se(at06[key], n_ifeval):.2f}."
                ),
            ]
        )
    swept = [r for r in f.get("chipalign_rows", []) if not r.get("endpoint")]
    if best and len(swept) < 3:
        lams = ", ".join(f"{r['lam']:g}" for r in swept)
        rows.append(
            [
                "Best ChipAlign lambda is 0.6",
                "0.6",
                f"merged at lambda {lams} only",
                NOT_RUN,
                "This variant does not sweep lambda; the full variant does (0.1 to 0.9).",
            ]
        )
    elif best:
        runner_up = max((r["balance"] for r in swept if r is not best and r["balance"] is not None), default=0.0)
        close = best["balance"] - runner_up < BALANCE_NOISE
        verdict = NOISE if close else YES if abs(best["lam"] - 0.6) < 0.15 else NO
        rows.append(
            [
                "Best ChipAlign lambda is 0.6",
                "0.6",
                f"{best['lam']:g} (highest balance of domain score and IFEval; "
                f"runner-up {runner_up:.2f} against {best['balance']:.2f})",
                verdict,
                "" if verdict == YES else "The balance is flat where both ends are close; its argmax is noise.",
            ]
        )
    ranked = sorted(f["best"].items(), key=lambda kv: -kv[1]["balance"])
    if len(ranked) > 1:
        top = ranked[0][0]
        close = ranked[0][1]["balance"] - ranked[1][1]["balance"] < BALANCE_NOISE
        verdict = NOISE if close else YES if top == "chipalign" else NO
        rows.append(
            [
                "ChipAlign beats the other merges",
                "ChipAlign ahead of linear/slerp/TA/TIES/DELLA",
                "balance " + ", ".join(f"{m} {r['balance']:.2f}" for m, r in ranked),
                verdict,
                ""
                if verdict == YES
                else "Models this close are nearly collinear"
                + (f" (mean angle {f['angle']['mean']:.2f} degrees between their tensors)" if f.get("angle") else "")
                + ": geodesic and linear interpolation almost coincide, and the ranking follows evaluation noise.",
            ]
        )
    return rows


def retrieval_rows(f: dict) -> list[list]:
    if not f:
        return [["Domain-adapted retriever", "+30% over the base SentenceTransformer", "–", NOT_RUN, ""]]
    rows = []
    gain = f.get("adapted_gain_hit8")
    if gain is not None:
        n = int(f["finetuned"].get("queries") or 0)
        _, real = difference(f["finetuned"]["hit@8"], f["minilm"]["hit@8"], n)
        verdict = (YES if gain > 0 else NO) if real else NOISE
        rows.append(
            [
                "Domain-adapted retriever",
                "+30% hit rate over the base SentenceTransformer",
                f"hit@8 {fmt(f['minilm']['hit@8'])} → {fmt(f['finetuned']['hit@8'])} "
                f"({gain:+.0f}%, {n} questions); BM25 "
                f"{fmt(f.get('bm25', {}).get('hit@8'))}, hybrid {fmt(f.get('hybrid', {}).get('hit@8'))}",
                verdict,
                ""
                if verdict == YES
                else f"{n} questions (one hit is {100 / max(n, 1):.0f} points) and a few hundred synthetic "
                "training queries from a 135M model; ChipNeMo fine-tuned on 3,000 generated domain samples.",
            ]
        )
    gains = f.get("rag_gains")
    if gains:
        mean = sum(gains) / len(gains)
        rows.append(
            [
                "RAG improves domain answers",
                "retrieved context improves answers",
                f"ROUGE-L gain {', '.join(f'{g:+.3f}' for g in gains)} across models",
                NOISE if abs(mean) < ROUGE_NOISE else YES if mean > 0 else NO,
                ""
                if mean >= ROUGE_NOISE
                else "A 135M model copies poorly from a long context, and 16 questions "
                "leave a mean ROUGE-L change of a few hundredths unresolved.",
            ]
        )
    return rows


def mmlu_row(models: dict, merged: str, n: int, dapt_vs_base=None) -> list:
    finding, paper = "General knowledge kept (MMLU)", "DAPT models lose little MMLU; merging recovers general ability"
    base, dapt, m = (models.get(name, {}).get("mcq.acc") for name in ("eval_base", "eval_dapt", merged))
    if base is None or dapt is None:
        return [finding, paper, "–", NOT_RUN, ""]
    here = f"acc {fmt(base)} (general), {fmt(dapt)} (DAPT), {fmt(m)} (ChipAlign 0.6), {n} questions"
    # A general model at chance has no measured knowledge to lose: "kept" would be vacuous.
    if abs(base - MCQ_CHANCE) <= 2 * binomial_se(base, n):
        return [
            finding,
            paper,
            here,
            NOISE,
            f"The general model itself is within noise of chance ({MCQ_CHANCE:.2f}) on this subset: at 135M parameters "
            "MMLU measures no general knowledge for DAPT to lose or merging to win back.",
        ]
    diff, real = (dapt_vs_base.diff, dapt_vs_base.verdict != NOISE) if dapt_vs_base else difference(dapt, base, n)
    kept = not real or diff > 0
    if dapt_vs_base:
        here += f"; DAPT vs general: {paired_text(dapt_vs_base)}"
    return [finding, paper, here, YES if kept else NO, "" if kept else "See the learning-rate row."]


def headline(facts: dict, chip_dapt: str, arm_evals: dict[str, str]) -> list[list]:
    models = facts.get("models", {})
    return (
        [tokenizer_row(facts.get("tokenizer"))]
        + dapt_rows(facts.get("dapt"), chip_dapt, models, arm_evals, facts.get("n_ifeval", 0))
        + alignment_rows(facts.get("alignment"), models)
        + merge_rows(facts.get("merge"), facts.get("n_ifeval", 0))
        + retrieval_rows(facts.get("retrieval"))
        + [mmlu_row(models, "merged_chipalign_0.6", facts.get("n_mmlu", 0), facts.get("mmlu_paired"))]
    )
