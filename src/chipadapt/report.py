"""Printed tables: the data blend, and validation before vs. after a stage."""

from rich.console import Console
from rich.table import Table

from chipadapt.data.blend import BlendRow

console = Console()


def blend_table(rows: list[BlendRow], packing_efficiency: float, sequences: int, seq_len: int) -> Table:
    table = Table(
        title=f"Training blend: {sequences} sequences x {seq_len} tokens, packing {100 * packing_efficiency:.2f}%"
    )
    for column in ("source", "train docs", "val docs", "tokens", "weight x epochs", "blended tokens", "share"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for r in rows:
        table.add_row(
            r.name,
            str(r.train_docs),
            str(r.val_docs),
            f"{r.train_tokens:,}",
            f"{r.multiplier:g}",
            f"{r.blended_tokens:,}",
            f"{100 * r.share:.1f}%",
        )
    return table


def before_after_table(before: dict[str, dict], after: dict[str, dict], label: str) -> Table:
    table = Table(title=f"Validation: starting model vs. after {label} (bits per byte compare across tokenizers)")
    for column in ("split", "ppl before", "ppl after", "change", "bits/byte before", "bits/byte after"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split in after:
        new, old = after[split], before.get(split)
        if old:
            change = f"{100 * (new['ppl'] - old['ppl']) / old['ppl']:+.1f}%"
            table.add_row(
                split, f"{old['ppl']:.3f}", f"{new['ppl']:.3f}", change, f"{old['bpb']:.4f}", f"{new['bpb']:.4f}"
            )
        else:
            table.add_row(split, "-", f"{new['ppl']:.3f}", "-", "-", f"{new['bpb']:.4f}")
    return table
