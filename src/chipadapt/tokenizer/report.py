"""Tokens per character before and after the extension, per source and overall."""

from collections import Counter

from rich.table import Table
from tokenizers import Tokenizer

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


def reduction_table(report: dict) -> Table:
    table = Table(
        title=f"Augmented tokenizer: {report['new_tokens']} new tokens "
        f"(vocabulary {report['vocab_size_before']} -> {report['vocab_size_after']}, "
        f"embeddings padded to {report['embedding_rows']})"
    )
    for column in ("text", "source", "tokens/char before", "after", "fewer tokens"):
        table.add_column(column, justify="left" if column in ("text", "source") else "right")
    for kind in ("domain", "general"):
        for name, row in report[kind].items():
            table.add_row(
                kind,
                name,
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
                + (f" [{_end(ci[0], '-inf')}, {_end(ci[1], '+inf')}]" if ci else ""),
            ]
        table.add_row(label, *cells)
    return table


def _end(value: float | None, unbounded: str) -> str:
    """An interval end as read back from the report file, where an unbounded end is null."""
    return unbounded if value is None or abs(value) == float("inf") else f"{value:+.4f}"


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
