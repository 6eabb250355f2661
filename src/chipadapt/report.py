"""Printed tables: the data blend, and validation before vs. after a stage."""

from rich.console import Console
from rich.table import Table

from chipadapt.data.blend import BlendRow

console = Console()


def blend_table(rows: list[BlendRow], packing_efficiency: float, sequences: int, seq_len: int) -> Table:
    table = Table(title=f"Training blend: {sequences} sequences x {seq_len} tokens, packing {100 * packing_efficiency:.2f}%")
    for column in ("source", "train docs", "val docs", "tokens", "weight x epochs", "blended tokens", "share"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for r in rows:
        table.add_row(
            r.name, str(r.train_docs), str(r.val_docs), f"{r.train_tokens:,}", f"{r.multiplier:g}",
            f"{r.blended_tokens:,}", f"{100 * r.share:.1f}%",
        )
    return table


def before_after_table(before: dict[str, dict], after: dict[str, dict], label: str) -> Table:
    table = Table(title=f"Validation perplexity: base vs. {label}")
    for column in ("split", "base ppl", f"{label} ppl", "change"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split in after:
        new = after[split]["ppl"]
        old = before.get(split, {}).get("ppl")
        change = f"{100 * (new - old) / old:+.1f}%" if old else "-"
        table.add_row(split, f"{old:.3f}" if old else "-", f"{new:.3f}", change)
    return table
