"""Section 5: the domain-adapted retriever against BM25, the base MiniLM encoder and the BM25+dense
hybrid on hand-written OpenROAD questions, and what retrieved context does to domain QA answers."""

import matplotlib.pyplot as plt

from chipadapt.reproduce.report.context import Context, get, missing, table

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

    train_note = ", ".join(f"{k} {v}" for k, v in train.items() if isinstance(v, (int, float))) if train else ""
    lines = [
        f"Encoder fine-tuned by {ctx.link('retriever')} on synthetic (query, passage) pairs with in-batch negatives"
        f"{f' ({train_note})' if train else ''}; "
        f"scored by {ctx.link('retrieval_eval')} on the 43 hand-written questions:",
        "",
        table(["retriever", *COLUMNS], rows),
        "",
        ctx.save_figure(fig, "retrieval.png"),
        "",
    ]

    qa_rows = []
    for name in ("eval_base", "eval_dapt", "eval_sft", "eval_sft_base", "eval_steerlm"):
        res = ctx.results(name)
        if res and get(res, "rag_qa.rougeL") is not None:
            qa_rows.append(
                [
                    f"{ctx.label(name)} ({ctx.link(name)})",
                    get(res, "rag_qa.rougeL"),
                    get(res, "rag_qa.rougeL_rag"),
                    get(res, "rag_qa.rag_gain"),
                ]
            )
    if qa_rows:
        facts["rag_gains"] = [r[3] for r in qa_rows]
        lines += [
            "Domain QA (OpenROAD questions with reference answers, ROUGE-L against the reference), without and with "
            "the top passages of the hybrid retriever in the prompt:",
            "",
            table(["model", "ROUGE-L, no context", "ROUGE-L, RAG", "RAG gain"], qa_rows),
        ]
    return "\n".join(lines), facts
