"""The headline table: each paper finding, the figure measured here, and whether it reproduces.

Wherever two models (or two retrievers, or one model with and without retrieved context) are scored on
the same items, the verdict is a paired test's (report/pairs.py, eval/paired.py: McNemar's test with
Tango's interval for pass/fail scores, the paired permutation test otherwise): the finding "reproduces"
when the 95% interval of the difference excludes 0 in the paper's direction, "contradicts" it when it
excludes 0 the other way, and is otherwise "not resolved at this size", with the number of items (for
held-out text, also tokens) that would resolve a difference as large as the one seen (report/power.py). Findings with
nothing to pair say what their interval rests on instead; "not measured" means no per-item records.
The reasons given where a finding does not reproduce are facts of this setup, not guesses about it.
"""

from chipadapt.report import bracketed
from chipadapt.reproduce.report import merge_verdicts, power
from chipadapt.reproduce.report.alignment_verdicts import alignment_rows
from chipadapt.reproduce.report.context import fmt
from chipadapt.reproduce.report.general_model import sized_model
from chipadapt.reproduce.report.pairs import DocumentPair, NotPaired, diff_text, pct_text
from chipadapt.reproduce.report.power import (
    CONTRADICTS,
    NOT_MEASURED,
    NOT_RESOLVED,
    NOT_RUN,
    REPRODUCES,
    joined,
    not_paired_why,
)

MCQ_CHANCE = 0.25  # four choices per MMLU question
LARGE_LR = 1e-4  # ChipNeMo's ablation: 5e-6 against a learning rate 10-60x larger


def judge_documents(p: DocumentPair | NotPaired | None, paper_sign: int) -> tuple:
    """power.verdict of a corpus_ppl comparison, sized in documents and tokens; where the runs predate the
    pooled domain_all.bpb (compared on the mean of sources), it names the sources whose single document
    adds no variance."""
    if not p:
        return power.verdict(p, paper_sign, "documents")
    verdict, why = power.verdict(p.d, paper_sign, "documents", p.tokens_per_doc)
    if p.thin:
        why = joined(
            why, f"{', '.join(p.thin)}: one held-out document each, so the interval leaves out their sampling variance"
        )
    return verdict, why


def worst(verdicts: list[tuple]) -> tuple:
    """Several tests of one finding: it reproduces only if every one does, contradicts if any does."""
    for v in verdicts:
        if v[0] == CONTRADICTS:
            return v
    for v in verdicts:
        if v[0] != REPRODUCES:
            return v
    return verdicts[0]


# --- 1. tokenizer ----------------------------------------------------------------------------------

TOKENIZER = ("Domain-adapted tokenizer", "1.6-3.3% fewer domain tokens, general unchanged")
GENERAL_UNCHANGED_PCT = 1.0  # a tokenizer that shortens general text by more than this has changed it


def tokenizer_row(f: dict) -> list:
    if not f:
        return [*TOKENIZER, "–", NOT_RUN, ""]
    held = f.get("held_out") or []
    domain = [r for r in held if r["kind"] == "domain"]
    savings = "; ".join(
        f"{r['text']} {-100 * r['paired'].diff:.1f}% "
        + bracketed(-100 * r["paired"].ci[1], -100 * r["paired"].ci[0], r["paired"].n, lambda end: f"{end:.1f}")
        for r in held
        if r.get("paired")
    )
    here = (
        f"{f['domain_in_sample']:.1f}% fewer on the corpus the tokens were chosen from; held out: {savings or '–'} "
        f"(paired by document); general in-sample {abs(f['general_in_sample']):.2f}%"
    )
    if abs(f["general_in_sample"]) >= GENERAL_UNCHANGED_PCT:
        return [*TOKENIZER, here, CONTRADICTS, f"General text changes by {f['general_in_sample']:.2f}%."]
    if not domain:
        return [
            *TOKENIZER,
            here,
            NOT_MEASURED,
            "No held-out domain text here: the corpus count is exact, but the tokens were chosen to shorten it.",
        ]
    verdict, why = worst([power.verdict(r.get("paired"), -1, "documents") for r in domain])
    if verdict == REPRODUCES and min(r["reduction_pct"] for r in domain) > 3.3:
        why = (
            "Larger savings than ChipNeMo's: 4,000 tokens chosen for a 16 MB corpus of six repositories and added "
            "to a 49k vocabulary (ChipNeMo: LLaMA2's 32k vocabulary and a far broader 24B-token corpus), "
            "so each new token is more specific."
        )
    return [*TOKENIZER, here, verdict, why]


# --- 2. DAPT ---------------------------------------------------------------------------------------

DAPT = ("DAPT lowers domain perplexity", "lower domain perplexity after DAPT (issue goal: held-out bpb -15%)")
LARGE = ("Large DAPT learning rate hurts general ability", "a large lr degraded general ability; 5e-6 kept it")
AUGMENTED = ("Augmented tokenizer costs nothing after DAPT", "no loss in domain or general quality")


def dapt_row(long: dict | None) -> list:
    if not long:
        return [*DAPT, "–", NOT_RUN, ""]
    r, p = long["row"], long.get("domain")
    tokens = f" after {r['tokens']:,} tokens" if r["tokens"] else ""
    if not p:
        here = (
            f"{long['name']}: its own validation only, domain bpb {r['domain_change']:+.1f}%, "
            f"WikiText-2 {r['general_change']:+.1f}%{tokens}"
        )
        why = (
            f"The DAPT model's corpus_ppl evaluation is {not_paired_why(p)}"
            if isinstance(p, NotPaired)
            else "No corpus_ppl evaluation of the DAPT model in this variant (eval_dapt): no per-document records "
            "to pair"
        )
        return [
            *DAPT,
            here,
            NOT_MEASURED,
            f"{why}; only its validation on {r.get('val_sequences') or 'a few'} sequences per split.",
        ]
    general = long.get("general")
    measure = (
        "domain_mean.bpb, the mean of the sources: these runs predate the pooled domain_all.bpb"
        if p.fallback
        else f"{p.d.n} documents pooled"
    )
    here = (
        f"{long['name']}: held-out domain bpb ({measure}) {p.d.a:.3f} → {p.d.b:.3f}, {pct_text(p.d)}{tokens}; "
        f"goal {long.get('goal', '–')}" + (f"; WikiText-2 {pct_text(general.d)}" if general else "")
    )
    return [*DAPT, here, *judge_documents(p, -1)]


def large_lr_row(arms: list[dict]) -> list:
    if len(arms) < 2 or max(a["lr"] for a in arms) < LARGE_LR:
        return [
            *LARGE,
            f"learning rates {', '.join(format(a['lr'], 'g') for a in arms) or '–'} only",
            NOT_RUN,
            "This variant has no large-lr arm; the full variant sweeps up to 1e-3.",
        ]
    small, large = arms[0], max(arms, key=lambda a: a["lr"])
    if not large.get("general_vs_base"):
        here = (
            f"their own validation: WikiText-2 bpb {small['general_change']:+.1f}% at lr {small['lr']:g} vs "
            f"{large['general_change']:+.1f}% at {large['lr']:g}"
        )
        unpaired = large.get("general_vs_base")
        why = (
            f"The lr {large['lr']:g} arm's corpus_ppl evaluation is {not_paired_why(unpaired)}."
            if isinstance(unpaired, NotPaired)
            else "The lr arms have no corpus_ppl evaluation here: nothing to pair."
        )
        return [*LARGE, here, NOT_MEASURED, why]
    parts = [f"lr {a['lr']:g} {pct_text(a['general_vs_base'].d)}" for a in arms if a.get("general_vs_base")]
    here = f"WikiText-2 bpb against the general model, paired by document: {', '.join(parts)}"
    verdict, why = judge_documents(large["general_vs_base"], +1)
    if verdict == CONTRADICTS:
        why = (
            "Tens of thousands of tokens even at a large lr improve WikiText-2 (the blend's general share is "
            "Wikipedia too); ChipNeMo saw the damage over billions of tokens."
        )
    return [*LARGE, here, verdict, why]


def augmented_row(aug: list[dict], same: dict | None) -> list | None:
    if not aug:
        return None
    if same is None:
        return [*AUGMENTED, "no base-tokenizer run at the same lr", NOT_RUN, ""]
    paired = [r for r in aug if r.get("domain_vs_same")]
    if paired:
        return augmented_paired_row(paired)
    figures = "; ".join(f"{r['name']} {r['domain_after']:.3f} (before DAPT {r['domain_before']:.3f})" for r in aug)
    here = (
        f"domain bpb after DAPT, training validation: {figures} vs {same['domain_after']:.3f} with the base tokenizer"
    )
    unpaired = [r for r in aug if isinstance(r.get("domain_vs_same"), NotPaired)]
    why = (
        "; ".join(f"{r['name']}'s corpus_ppl evaluation is {not_paired_why(r['domain_vs_same'])}" for r in unpaired)
        + f": only their training validation on {aug[0].get('val_sequences') or 'a few'} sequences per split"
        if unpaired
        else "The augmented arms have no corpus_ppl evaluation: only their training validation on "
        f"{aug[0].get('val_sequences') or 'a few'} sequences per split, point figures with no per-document "
        "records to pair."
    )
    return [*AUGMENTED, here, NOT_MEASURED, why]


def augmented_paired_row(paired: list[dict]) -> list:
    """Augmented minus base tokenizer at the same lr, held-out bits per byte paired by document. Judged on
    the first arm (the default new-row initialisation; the paper's zero rows are the other arm, shown
    beside it): more bits per byte beyond noise, on domain or general text, is a cost (contradicts);
    fewer on domain text with general text not worse beyond noise reproduces."""
    parts = []
    for r in paired:
        general = r.get("general_vs_same")
        parts.append(
            f"{r['name']} minus the base tokenizer's run (lr {r['lr']:g}): domain {pct_text(r['domain_vs_same'].d)}"
            + (f", WikiText-2 {pct_text(general.d)}" if general else "")
        )
    here = "held-out bpb, paired by document: " + "; ".join(parts)
    # The default initialisation's arm decides; the paper's zero rows are its ablation.
    first = next((r for r in paired if r["tokenizer"] == "augmented"), paired[0])
    verdict, why = judge_documents(first["domain_vs_same"], -1)
    general = first.get("general_vs_same")
    if general and judge_documents(general, -1)[0] == CONTRADICTS:
        verdict, why = CONTRADICTS, ""  # general text costs more bits: not "nothing", whatever domain text does
    if verdict == CONTRADICTS:
        trained = f"{first['tokens']:,} DAPT tokens" if first.get("tokens") else "a short DAPT run"
        why = (
            f"{first['name']}'s new embedding rows had {trained} to learn from; ChipNeMo trained its new rows "
            "over 24B tokens."
        )
    return [*AUGMENTED, here, verdict, why]


def dapt_rows(f: dict) -> list[list]:
    if not f:
        return [[*DAPT, "–", NOT_RUN, ""]]
    rows = [dapt_row(f.get("long")), large_lr_row(f.get("arms") or [])]
    aug = augmented_row(f.get("aug") or [], f.get("same_lr_base"))
    return rows + ([aug] if aug else [])


def merge_rows(f: dict) -> list[list]:
    """ChipAlign's findings from the merge section's paired tests (merge_verdicts.py)."""
    return merge_verdicts.rows(f)


# --- 5. retrieval and RAG --------------------------------------------------------------------------

RETRIEVER = ("Domain-adapted retriever", "+30% hit rate over the base SentenceTransformer")
RAG = ("RAG improves domain answers", "retrieved context improves answers")
RAG_JUDGED = ("eval_sft", "eval_dapt", "eval_base")  # the chip model's answers decide, where it ran


def retrieval_rows(f: dict, size: str | None = None) -> list[list]:
    if not f:
        return [[*RETRIEVER, "–", NOT_RUN, ""]]
    rows = []
    if "minilm" in f and "finetuned" in f:
        d = f.get("hit8_paired")
        base, adapted = f["minilm"].get("hit@8"), f["finetuned"].get("hit@8")
        gain = f.get("adapted_gain_hit8")
        here = (
            f"hit@8 {fmt(base)} → {fmt(adapted)}"
            + (f" ({gain:+.0f}%)" if gain is not None else "")
            + (f", paired by question {diff_text(d, 'questions')}" if d else "")
            + f"; BM25 {fmt(f.get('bm25', {}).get('hit@8'))}, hybrid {fmt(f.get('hybrid', {}).get('hit@8'))}"
        )
        verdict, why = power.verdict(d, +1, "questions")
        if verdict != REPRODUCES:
            why = joined(
                why,
                f"a few hundred synthetic training queries from {sized_model(size)} "
                "(ChipNeMo: 3,000 generated domain samples)",
            )
        rows.append([*RETRIEVER, here, verdict, why])
    rag = f.get("rag") or {}
    if rag:
        here = "ROUGE-L with minus without the passages: " + "; ".join(
            f"{label} {diff_text(d, 'questions')}" if d else f"{label} not paired" for label, d in rag.values()
        )
        judged = next((name for name in RAG_JUDGED if rag.get(name, (None, None))[1]), None)
        verdict, why = power.verdict(rag[judged][1] if judged else None, +1, "questions")
        if judged:
            why = f"judged on {rag[judged][0]}" + (f"; {why}" if why else "")
        rows.append([*RAG, here, verdict, why])
    return rows


# --- 6. MMLU ---------------------------------------------------------------------------------------

MMLU = ("DAPT costs a little general knowledge (MMLU)", "a slight MMLU drop after DAPT")


def mmlu_row(f: dict, size: str | None = None) -> list:
    """The DAPT model (else the chip model) against the general model, question by question."""
    f = f or {}
    paired = f.get("paired") or {}
    if f.get("base_acc") is None or not paired:
        return [*MMLU, "–", NOT_RUN, ""]
    ci = f.get("base_ci")
    here = (
        f"general model acc {f['base_acc']:.3f}"
        + (f" {bracketed(*ci, None)}" if ci else "")
        + "; minus the general model, paired: "
        + "; ".join(f"{label} {diff_text(d, 'questions') if d else 'not paired'}" for label, d in paired.values())
    )
    # A general model at chance has no measured knowledge to lose: any verdict on keeping it would be vacuous.
    if ci and ci[0] <= MCQ_CHANCE <= ci[1]:
        return [
            *MMLU,
            here,
            f"{NOT_RESOLVED} (the general model is at chance)",
            f"The general model's own interval covers chance ({MCQ_CHANCE:.2f}): for {sized_model(size)} this MMLU "
            "subset measures no general knowledge for DAPT to lose; more questions will not change that.",
        ]
    label, d = paired.get("eval_dapt") or next(iter(paired.values()))
    verdict, why = power.verdict(d, -1, "questions")
    return [*MMLU, here, verdict, (f"judged on {label}; " + why) if why else f"judged on {label}"]


def headline(facts: dict) -> list[list]:
    return (
        [tokenizer_row(facts.get("tokenizer"))]
        + dapt_rows(facts.get("dapt"))
        + alignment_rows(facts.get("alignment"), facts.get("model_size"))
        + merge_rows(facts.get("merge"))
        + retrieval_rows(facts.get("retrieval"), facts.get("model_size"))
        + [mmlu_row((facts.get("models") or {}).get("mmlu"), facts.get("model_size"))]
    )
