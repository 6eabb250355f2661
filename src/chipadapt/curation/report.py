"""The curation report: counts per filter, duplicates, characters by source and language; a PNG."""

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from rich.table import Table  # noqa: E402


def summary_table(report: dict) -> Table:
    table = Table(
        title=f"Curation: {report['files_seen']} files seen, {report['files_read']} read -> "
        f"{report['documents_written']} documents "
        f"({report['files_per_s']:.0f} files/s, {report['mb_per_s']:.1f} MB/s)"
    )
    table.add_column("step")
    table.add_column("files", justify="right")
    table.add_row("read", str(report["files_read"]))
    for reason, count in sorted(report["skipped"].items()):
        table.add_row(f"skipped: {reason}", str(count))
    records = report["records"]
    if records["files"]:
        table.add_row(f"records read (from {records['files']} .jsonl files)", str(records["read"]))
        for reason, count in sorted(records["skipped"].items()):
            table.add_row(f"records skipped: {reason}", str(count))
    table.add_row("duplicates: exact", str(report["duplicates"]["exact"]))
    table.add_row("duplicates: near (MinHash LSH)", str(report["duplicates"]["near"]))
    for reason, count in sorted(report["generated"].items()):
        table.add_row(f"labelled generated: {reason}", str(count))
    for kind, count in sorted(report["redactions"].items()):
        table.add_row(f"redacted: {kind} (occurrences)", str(count))
    table.add_row("written", str(report["documents_written"]))
    return table


def chars_chart(report: dict, path) -> None:
    by_source = report["chars_by_source_lang"]
    sources = sorted(by_source, key=lambda s: sum(by_source[s].values()))
    langs = sorted(
        {lang for per in by_source.values() for lang in per},
        key=lambda lang: -sum(p.get(lang, 0) for p in by_source.values()),
    )
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(sources) + 2))
    left = [0.0] * len(sources)
    colors = plt.get_cmap("tab20").colors
    for i, lang in enumerate(langs):
        values = [by_source[s].get(lang, 0) / 1e6 for s in sources]
        ax.barh(sources, values, left=left, label=lang, color=colors[i % len(colors)])
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("million characters written")
    ax.set_title("Curated corpus by source and language")
    ax.legend(loc="lower right", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
