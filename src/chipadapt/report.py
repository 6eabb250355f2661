"""The console, and the table of validation before vs. after a stage."""

from rich.console import Console
from rich.table import Table

console = Console()
if not (console.is_terminal or console.is_jupyter):  # piped or redirected: whole names, not cut at 80 columns
    console.width = 1000


def while_running() -> dict:
    """Arguments of a progress bar shown only while its work runs (rich's `transient`), and not at all
    where no terminal shows it: there rich would leave an empty line on stdout for it, beside a
    one-line error too."""
    return {"transient": True, "disable": not (console.is_terminal or console.is_jupyter), "console": console}


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
