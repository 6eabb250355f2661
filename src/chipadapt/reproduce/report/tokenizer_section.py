"""Section 1: how many tokens the augmented tokenizer saves on domain text, and what it costs on general text.

The tokenizer step's own report counts the corpus it was built from; the same count on chip-design
text it never saw (VerilogEval reference RTL, EDA-Corpus scripts) and on general text (IFEval
prompts, WikiText-2 test) is the out-of-sample check that ChipNeMo's 1.6-3.3% figure is about. Both
tokenizers count the same documents, so the saving's interval comes from a paired permutation test over
them (tokenizer/held_out.py: exact over 16 documents or fewer, random swaps above; none under 6).
"""

import json
from pathlib import Path

import matplotlib.pyplot as plt

from chipadapt.models.hf_folder import load_tokenizer
from chipadapt.report import bracketed
from chipadapt.reproduce.report.context import Context, missing, table
from chipadapt.tokenizer.held_out import token_ratio  # the saving's paired interval, as the tokenizer step reports it

# (name, kind, file under the shared data folder, field holding the text)
HELD_OUT_TEXTS = [
    ("VerilogEval reference RTL", "domain", "verilog_eval/verilog_eval_v2_spec-to-rtl.jsonl", "ref"),
    ("EDA-Corpus scripts", "domain", "eda_scripts/eda_corpus_ps_nonaug.jsonl", "script"),
    ("IFEval prompts", "general", "ifeval/input_data.jsonl", "prompt"),
    ("WikiText-2 test", "general", "general/wikitext2_raw_test_docs_detok.jsonl", "text"),
]


def held_out_counts(base: Path, augmented: Path, shared: Path) -> list[dict]:
    tok_base, tok_aug = load_tokenizer(base), load_tokenizer(augmented)
    rows = []
    for name, kind, file, key in HELD_OUT_TEXTS:
        path = shared / file
        if not path.is_file():
            continue
        texts = [t for t in (json.loads(line).get(key) for line in path.open(encoding="utf-8") if line.strip()) if t]
        before = [len(ids) for ids in tok_base(texts, add_special_tokens=False)["input_ids"]]
        after = [len(ids) for ids in tok_aug(texts, add_special_tokens=False)["input_ids"]]
        rows.append(
            {
                "text": name,
                "kind": kind,
                "documents": len(texts),
                "before": sum(before),
                "after": sum(after),
                "reduction_pct": 100 * (sum(before) - sum(after)) / max(sum(before), 1),
                "paired": token_ratio(before, after),
            }
        )
    return rows


def saving_text(r: dict) -> str:
    """'3.73% [3.1, 4.4]': the saving and its interval, in percent of the base tokenizer's count."""
    d = r.get("paired")
    if d is None:
        return f"{r['reduction_pct']:.2f}%"
    return f"{-100 * d.diff:.2f}% {bracketed(-100 * d.ci[1], -100 * d.ci[0], d.n, lambda end: f'{end:.2f}')}"


def section(ctx: Context) -> tuple[str, dict]:
    if not ctx.has("tokenizer"):
        return missing("Tokenizer", ["tokenizer"]), {}
    report = ctx.read_json("tokenizer", "tokenizer_report.json")
    rows = [
        [kind, name, f"{r['tokens_before']:,}", f"{r['tokens_after']:,}", f"{r['reduction_pct']:.2f}%"]
        for kind in ("domain", "general")
        for name, r in report[kind].items()
    ]
    augmented = ctx.folder("tokenizer") / "model"
    # A run continued on another machine (restore.py) has the tokenizer step's records, not its files.
    restored = not any((augmented / name).is_file() for name in ("tokenizer.json", "tokenizer.model"))
    held = [] if restored else held_out_counts(ctx.base_model, augmented, ctx.shared_data)
    held_rows = [
        [r["kind"], r["text"], r["documents"], f"{r['before']:,}", f"{r['after']:,}", saving_text(r)] for r in held
    ]

    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [n for n in report["domain"] if n != "overall"] + [r["text"] for r in held]
    values = [report["domain"][n]["reduction_pct"] for n in report["domain"] if n != "overall"] + [
        r["reduction_pct"] for r in held
    ]
    colors = ["tab:blue"] * (len(report["domain"]) - 1) + [
        "tab:orange" if r["kind"] == "domain" else "tab:gray" for r in held
    ]
    ax.barh(names, values, color=colors)
    ax.axvspan(1.6, 3.3, color="tab:green", alpha=0.15, label="ChipNeMo: 1.6-3.3% fewer domain tokens")
    ax.set_xlabel("fewer tokens with the augmented tokenizer (%)")
    ax.set_title("Tokenizer: corpus it was built on (blue), unseen domain (orange), general (gray)")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    image = ctx.save_figure(fig, "tokenizer.png")

    domain_held = [r for r in held if r["kind"] == "domain"]
    general_held = [r for r in held if r["kind"] == "general"]
    facts = {
        "domain_in_sample": report["domain"]["overall"]["reduction_pct"],
        "general_in_sample": report["general"]["general"]["reduction_pct"],
        "domain_held_out": min((r["reduction_pct"] for r in domain_held), default=None),
        "domain_held_out_max": max((r["reduction_pct"] for r in domain_held), default=None),
        "general_held_out": max((abs(r["reduction_pct"]) for r in general_held), default=None),
        "new_tokens": report["new_tokens"],
        "held_out": held,
    }
    text = [
        f"Built by {ctx.link('tokenizer')}: {report['new_tokens']:,} domain tokens added to the "
        f"{report['vocab_size_before']:,}-token vocabulary of {ctx.model_name or 'the general model'} "
        "(embedding rows initialised from their sub-token means).",
        "",
        "On the corpus the tokens were chosen from:",
        "",
        table(["kind", "text", "tokens before", "tokens after", "fewer tokens"], rows),
        "",
        "On text the tokenizer step never read (the saving's 95% interval swaps documents between the tokenizers):",
        "",
        "Not counted: the augmented tokenizer's files stayed on the machine that ran the tokenizer step, and "
        "only its records reached this one (`resume_from`); the counts measured there are in experiments/LOG.md."
        if restored
        else table(["kind", "text", "documents", "tokens before", "tokens after", "fewer tokens"], held_rows),
        "",
        image,
    ]
    return "\n".join(text), facts
