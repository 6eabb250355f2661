"""Section 6: every model on one suite, MMLU where it was run (general knowledge kept or lost): the DAPT
and chip models against the general model, paired question by question (McNemar)."""

from chipadapt.reproduce.report import domain_bpb
from chipadapt.reproduce.report.context import Context, get, missing, table
from chipadapt.reproduce.report.pairs import between, diff_text

MMLU_AGAINST_BASE = ("eval_dapt", "eval_sft")  # the DAPT model and the chip model (DAPT + SFT)

COLUMNS = [
    ("mcq.acc", "MMLU acc"),
    ("mcq.acc_norm", "MMLU acc (len-norm)"),
    (domain_bpb.POOLED, "domain bpb"),
    ("corpus_ppl.general.bpb", "WikiText-2 bpb"),
    ("ifeval.instruction_loose", "IFEval instr."),
    ("eda_script.call_f1", "EDA call F1"),
    ("rag_qa.rougeL_rag", "QA ROUGE-L (RAG)"),
]


def section(ctx: Context) -> tuple[str, dict]:
    names = [n for n, s in ctx.steps.items() if s.section == "models" and ctx.results(n)]
    if not names:
        return missing("Model suite", [n for n, s in ctx.steps.items() if s.section == "models"]), {}
    first = ctx.results(names[0])
    mmlu = next((ctx.results(n)["mcq"] for n in names if "mcq" in ctx.results(n)), {})
    measure = domain_bpb.get_measure  # domain bpb: domain_mean.bpb for runs from before domain_all.bpb
    rows = [[f"{ctx.label(n)} ({ctx.link(n)})", *[measure(ctx.results(n), k) for k, _ in COLUMNS]] for n in names]
    facts = {n: {k: measure(ctx.results(n), k) for k, _ in COLUMNS} for n in names}
    base = ctx.results("eval_base")
    paired = {n: between(ctx, "eval_base", n, "mcq.acc") for n in MMLU_AGAINST_BASE}
    mmlu_facts = {
        "base_acc": get(base, "mcq.acc"),
        "base_ci": get(base, "mcq.acc_ci"),
        "questions": get(base, "mcq.questions"),
        "paired": {n: (ctx.label(n), d) for n, d in paired.items() if d is not None},  # NotPaired kept: its reason
    }
    lines = [
        f"MMLU: {mmlu.get('questions', '–')} test questions ({mmlu.get('subjects', '–')} subjects), "
        "each choice scored by the model's log-likelihood of its text "
        "(cloze: SmolLM2-135M scored the lettered format at chance); chance is 0.25. "
        f"Domain bpb: every held-out corpus document pooled (corpus_ppl's domain_all.bpb); IFEval: "
        f"{get(first, 'ifeval.prompts') or '–'} prompts."
        + (f" {domain_bpb.FALLBACK_NOTE}" if domain_bpb.falls_back([ctx.results(n) for n in names]) else ""),
        "",
        table(["model", *[label for _, label in COLUMNS]], rows),
    ]
    against = [
        f"{label}: {diff_text(d, 'questions') if d else f'not paired ({d.reason})'}"
        for label, d in mmlu_facts["paired"].values()
    ]
    if against:
        lines += ["", "MMLU accuracy minus the general model's, paired by question: " + "; ".join(against) + "."]
    return "\n".join(lines), {"values": facts, "mmlu": mmlu_facts}
