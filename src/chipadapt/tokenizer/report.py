"""Tokens per character before and after the extension, per source and overall: in-sample on the
documents the tokens were chosen from, and on DAPT's held-out documents with a paired interval."""

from collections import Counter

from rich.table import Table
from tokenizers import Tokenizer

from chipadapt.report import bracketed, no_interval, unbounded
from chipadapt.tokenizer.words import token_count


def efficiency_rows(base, extended, counts_by_source: dict[str, Counter], chars_by_source: dict[str, int]) -> dict:
    rows = {}
    for name, counts in counts_by_source.items():
        before, after = token_count(base, counts), token_count(extended, counts)
        chars = chars_by_source[name]
        rows[name] = {
            "chars": chars,
            "tokens_before": before,
            "tokens_after": after,
            "tokens_per_char_before": before / chars,
            "tokens_per_char_after": after / chars,
            "reduction_pct": 100 * (before - after) / before,
        }
    if len(rows) > 1:
        before = sum(r["tokens_before"] for r in rows.values())
        after = sum(r["tokens_after"] for r in rows.values())
        chars = sum(r["chars"] for r in rows.values())
        rows["overall"] = {
            "chars": chars,
            "tokens_before": before,
            "tokens_after": after,
            "tokens_per_char_before": before / chars,
            "tokens_per_char_after": after / chars,
            "reduction_pct": 100 * (before - after) / before,
        }
    return rows


def saving_text(row: dict | None, with_n: bool = True) -> str:
    """'3.73% [3.10, 4.40] (n=12 documents)': a held-out row's saving, its 95% interval (paired by
    document) and n; over 5 documents or fewer the interval is unbounded: '37.59% (interval n/a: n=4,
    too few)'."""
    if row is None:
        return "nothing held out"
    ci = row.get("reduction_ci_pct")
    if unbounded(ci):
        return f"{row['reduction_pct']:.2f}% {no_interval(row.get('documents'))}"
    interval = f" {bracketed(*ci, row.get('documents'), lambda end: f'{end:.2f}')}" if ci else ""
    return f"{row['reduction_pct']:.2f}%{interval}" + (f" (n={row['documents']} documents)" if with_n else "")


def held_out_text(report: dict) -> str:
    """The held-out saving over all domain sources, or why there is none."""
    row = report.get("domain_held_out_reduction")
    if row is None:
        return "? (nothing held out: data.val_fraction is unset or 0, or no source holds a document out)"
    return saving_text(row)


def reduction_table(report: dict) -> Table:
    table = Table(
        title=f"Augmented tokenizer: {report['new_tokens']} new tokens "
        f"(vocabulary {report['vocab_size_before']} -> {report['vocab_size_after']}, "
        f"embeddings padded to {report['embedding_rows']})",
        caption="in-sample: the documents the tokens were chosen from; held out: DAPT's validation documents, "
        "which the selection never read, with a 95% interval paired by document"
        + ("; general (filter text): the text that filtered the tokens" if report.get("general_chose_tokens") else ""),
    )
    for column in ("text", "source", "documents", "tokens/char before", "after", "fewer tokens"):
        table.add_column(column, justify="left" if column in ("text", "source") else "right")
    documents = {n: d["selection"] for n, d in (report.get("documents") or {}).items()}
    documents["overall"] = sum(documents.values()) if documents else None
    general_label = "general (filter text)" if report.get("general_chose_tokens") else "general"
    for kind, label in (("domain", "domain, in-sample"), ("domain_held_out", "domain, held out")):
        for name, row in (report.get(kind) or {}).items():
            n = row.get("documents", documents.get(name))
            table.add_row(
                label,
                name,
                "" if n is None else str(n),
                f"{row['tokens_per_char_before']:.4f}",
                f"{row['tokens_per_char_after']:.4f}",
                saving_text(row, with_n=False) if kind == "domain_held_out" else f"{row['reduction_pct']:.2f}%",
            )
    if not report.get("domain_held_out"):
        table.add_row("domain, held out", "", "0", "", "", "none held out")
    for name, row in report["general"].items():
        table.add_row(
            general_label,
            name,
            "",
            f"{row['tokens_per_char_before']:.4f}",
            f"{row['tokens_per_char_after']:.4f}",
            f"{row['reduction_pct']:.2f}%",
        )
    return table


def starting_bpb_table(report: dict) -> Table | None:
    """The starting model's bits per byte per output-row rule, after each measured warm-up budget
    (init.warmup), after the input fit (init.input_fit) and after the output fit (init.fit), against
    the base tokenizer's."""
    starting = report.get("starting_bpb")
    if not starting:
        return None
    base = starting["base_tokenizer"]
    table = Table(
        title=f"Starting model before training (bits/byte; new input rows: {starting['input']}; "
        f"chosen output rule: {report['init']['output']})"
    )
    # "vs base": mean over sources ± its standard error over sources [95% interval, paired by block].
    for column in ("model", "domain bpb", "vs base", "general bpb", "vs base"):
        table.add_column(column, justify="left" if column == "model" else "right")
    table.add_row(
        "base tokenizer",
        f"{base.get('domain_bpb', float('nan')):.4f}",
        "",
        f"{base.get('general_bpb', float('nan')):.4f}",
        "",
    )
    # Static rules as they are; the warm-up's rows per measured budget; then the fits'.
    rows = {f"augmented, output={rule}": row for rule, row in starting["outputs"].items() if "+" not in rule}
    warmup = report.get("warmup") or {}
    for steps, row in sorted((starting.get("warmup_steps") or {}).items(), key=lambda kv: int(kv[0])):
        tokens = int(steps) * warmup["batch_size"] * warmup["seq_len"]
        rows[f"output={report['init']['output']} + warm-up {steps} steps ({tokens:,} tokens)"] = row
    input_fit, fit = report.get("input_fit") or {}, report.get("output_fit") or {}
    names = {
        "warmup": "warm-up",
        "input_fit": f"input fit ({input_fit.get('windows_used', 0):,} windows)",
        "fit": f"output fit ({fit.get('positions', 0):,} positions)",
    }
    for rule, row in starting["outputs"].items():
        after = rule.split("+")[1:]
        if after and after[-1] in ("input_fit", "fit"):
            rows[f"output={report['init']['output']} + " + " + ".join(names.get(a, a) for a in after)] = row
    for label, row in rows.items():
        cells = []
        for kind in ("domain", "general"):
            diff, err = row.get(f"{kind}_minus_base"), row.get(f"{kind}_minus_base_stderr")
            ci = row.get(f"{kind}_minus_base_ci")  # paired over blocks of text (starting_bpb.py)
            cells += [
                f"{row.get(f'{kind}_bpb', float('nan')):.4f}",
                ""
                if diff is None
                else f"{diff:+.4f}"
                + (f" ± {err:.4f}" if err else "")
                + (f" {bracketed(*ci, row.get(f'{kind}_blocks'), lambda end: f'{end:+.4f}')}" if ci else ""),
            ]
        table.add_row(label, *cells)
    return table


def most_useful_tokens(base: Tokenizer, extended: Tokenizer, counts, new: set[str], top: int = 30) -> list[dict]:
    """The new tokens that save the most tokens on the domain words `counts`, for the report."""
    saved: dict[str, int] = {}
    for word, n in counts.items():
        for token in extended.model.tokenize(word):
            if token.value in new:
                saved[token.value] = saved.get(token.value, 0) + n * (len(base.model.tokenize(token.value)) - 1)
    best = sorted(saved.items(), key=lambda kv: -kv[1])[:top]
    decoder = base.decoder
    return [{"token": decoder.decode([t]) if decoder else t, "tokens_saved": s} for t, s in best]
