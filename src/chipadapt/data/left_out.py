"""What readers leave out of a source, counted by reason with the files named, and the summary that says it."""

from collections import Counter

# What readers leave out, by reason: (one, many) for the warning. "where" (records a filter excludes)
# is asked for, so it is counted for the empty-source error but not warned about.
SKIP_REASONS = {
    "blank": ("text left out: empty or whitespace only", "texts left out: empty or whitespace only"),
    "binary": ("binary file left out (a NUL byte, as curation judges)", "binary files left out (NUL bytes)"),
    "encoding": ("file left out: not UTF-8 text", "files left out: not UTF-8 text"),
    # Read, not left out: a file with a few undecodable bytes (`undecodable_share`) keeps its text.
    "repaired": (
        "file read with its undecodable bytes replaced by U+FFFD",
        "files read with their undecodable bytes replaced by U+FFFD",
    ),
    "link": ("symbolic link left out: its file is read already", "symbolic links left out: their files are read"),
    "broken_link": ("broken symbolic link left out", "broken symbolic links left out"),
    "linked_folder": ("linked folder not followed", "linked folders not followed"),
    # Not left out, but perhaps not what was meant: a folder of only .jsonl files is read as records.
    "jsonl_whole": (
        ".jsonl file read as one document (the folder holds other files; format: jsonl reads records)",
        ".jsonl files read as one document each (the folder holds other files; format: jsonl reads records)",
    ),
}


# At most this many files are named per reason in the warning; the rest are counted.
NAMED_PER_REASON = 5


class LeftOut(Counter):
    """A Counter of what a reader left out, by reason, that also keeps the files' names: a warning that
    says "2 files left out" without saying which leaves the user to hunt for them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.names: dict[str, list[str]] = {}


def note_left_out(skipped: Counter, reason: str, name: str) -> None:
    """Count `name` under `reason`, and keep its name where `skipped` keeps names."""
    skipped[reason] += 1
    if isinstance(skipped, LeftOut):
        skipped.names.setdefault(reason, []).append(name)


def skipped_summary(skipped: Counter) -> str:
    """`2 binary files; 1 symbolic link to a file read already`; empty when nothing was left out."""
    parts = []
    names = getattr(skipped, "names", {})
    for reason, (one, many) in SKIP_REASONS.items():
        if skipped.get(reason):
            part = f"{skipped[reason]:,} {one if skipped[reason] == 1 else many}"
            if named := names.get(reason):
                rest = skipped[reason] - min(len(named), NAMED_PER_REASON)
                part += f" ({', '.join(named[:NAMED_PER_REASON])}{f' and {rest:,} more' if rest > 0 else ''})"
            parts.append(part)
    return "; ".join(parts)
