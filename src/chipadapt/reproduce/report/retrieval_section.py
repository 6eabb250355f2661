"""Section 5: the domain-adapted retriever against BM25, the base MiniLM encoder and the BM25+dense
hybrid on hand-written OpenROAD questions, and what retrieved context does to domain QA answers.
Both comparisons are paired: the retrievers rank for the same questions, and each model answers every
question with and without the retrieved passages."""

import matplotlib.pyplot as plt

from chipadapt.reproduce.report.context import Context, get, missing, table
from chipadapt.reproduce.report.pairs import diff_text, step_items, within

QA_MODELS = ("eval_base", "eval_dapt", "eval_sft", "eval_sft_base", "eval_steerlm")

NAMES = {
    "bm25": "BM25",
    "minilm": "MiniLM (base)",
    "finetuned": "MiniLM, domain-adapted",
    "hybrid": "hybrid (BM25 + adapted)",
}
COLUMNS = ["hit@1", "hit@5", "hit@8", "mrr@10"]


def section(ctx: Context) -> tuple[str, dict]:
    results = (ctx.results("retrieval_eval") or {}).get("retrieval")
    if not results:
        return missing("Retriever", ["retriever", "retrieval_eval"]), {}
    names = [n for n in NAMES if n in results] + [n for n in results if isinstance(results[n], dict) and n not in NAMES]
    rows = [[NAMES.get(n, n), *[results[n].get(c) for c in COLUMNS]] for n in names]
    manifest = ctx.read_json("retriever", "manifest.json") or {}
    train = manifest.get("metrics", {})
    facts = {n: results[n] for n in names}
    if "minilm" in results and "finetuned" in results and results["minilm"].get("hit@8"):
        facts["adapted_gain_hit8"] = (
            100 * (results["finetuned"]["hit@8"] - results["minilm"]["hit@8"]) / results["minilm"]["hit@8"]
        )
    # The adapted encoder against the base one, question by question (McNemar on hit@8).
    facts["hit8_paired"] = within(step_items(ctx, "retrieval_eval", "retrieval"), "minilm.hit@8", "finetuned.hit@8")

    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        ax.bar(
            [j + i * width for j in range(len(COLUMNS))],
            [results[n].get(c) or 0 for c in COLUMNS],
            width,
            label=NAMES.get(n, n),
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(COLUMNS))], COLUMNS)
    ax.set_ylim(0, 1)
    ax.set_title(f"Retrieval on OpenROAD documentation ({results.get('passages')} passages)")
    ax.legend(fontsize=8)

    queries = next((r.get("queries") for r in results.values() if isinstance(r, dict) and r.get("queries")), None)
    train_note = ", ".join(f"{k} {v}" for k, v in train.items() if isinstance(v, (int, float))) if train else ""
    lines = [
        f"Encoder fine-tuned by {ctx.link('retriever')} on synthetic (query, passage) pairs with in-batch negatives"
        f"{f' ({train_note})' if train else ''}; "
        f"scored by {ctx.link('retrieval_eval')} on {queries or 'the'} hand-written questions:",
        "",
        table(["retriever", *COLUMNS], rows),
        "",
        ctx.save_figure(fig, "retrieval.png"),
        "",
    ]

    if facts["hit8_paired"]:
        lines += [
            f"Adapted minus base encoder, hit@8 paired by question: {diff_text(facts['hit8_paired'], 'questions')}."
        ]
    qa_rows, rag = [], {}
    for name in QA_MODELS:
        res = ctx.results(name)
        if res and get(res, "rag_qa.rougeL") is not None:
            # ROUGE-L with the passages minus without, question by question
            rag[name] = within(step_items(ctx, name, "rag_qa"), "rougeL", "rougeL_rag")
            qa_rows.append(
                [
                    f"{ctx.label(name)} ({ctx.link(name)})",
                    get(res, "rag_qa.rougeL"),
                    get(res, "rag_qa.rougeL_rag"),
                    diff_text(rag[name], "questions") if rag[name] else get(res, "rag_qa.rag_gain"),
                ]
            )
    if qa_rows:
        facts["rag"] = {name: (ctx.label(name), d) for name, d in rag.items()}
        lines += [
            "",
            "Domain QA (OpenROAD questions with reference answers, ROUGE-L against the reference), without and with "
            "the top passages of the hybrid retriever in the prompt:",
            "",
            table(["model", "ROUGE-L, no context", "ROUGE-L, RAG", "RAG gain (paired, 95% interval)"], qa_rows),
        ]
    return "\n".join(lines), facts
