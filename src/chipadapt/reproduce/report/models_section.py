"""Section 6: every model on one suite, MMLU where it was run (general knowledge kept or lost)."""

from chipadapt.reproduce.report.context import Context, get, missing, table

COLUMNS = [
    ("mcq.acc", "MMLU acc"),
    ("mcq.acc_norm", "MMLU acc (len-norm)"),
    ("corpus_ppl.domain_mean.bpb", "domain bpb"),
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
    rows = [[f"{ctx.label(n)} ({ctx.link(n)})", *[get(ctx.results(n), k) for k, _ in COLUMNS]] for n in names]
    facts = {n: {k: get(ctx.results(n), k) for k, _ in COLUMNS} for n in names}
    lines = [
        f"MMLU: {mmlu.get('questions', '–')} test questions ({mmlu.get('subjects', '–')} subjects), "
        "each choice scored by the model's log-likelihood of its text "
        "(cloze; at 135M parameters the lettered format is at chance); chance is 0.25. "
        f"Domain bpb: held-out corpus documents; IFEval: {get(first, 'ifeval.prompts') or '–'} prompts.",
        "",
        table(["model", *[label for _, label in COLUMNS]], rows),
    ]
    return "\n".join(lines), facts
