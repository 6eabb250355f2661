"""The files of a folder source (links and hidden files sorted out) and the text of each file's bytes."""

import os
from collections import Counter
from pathlib import Path


def walk_folder(root: Path, suffixes: tuple[str, ...]) -> tuple[list[Path], Counter]:
    """The files under `root` that `suffixes` select, in a stable order, and what was left out.
    A symbolic link to a file read already (e.g. alu_link.v -> alu.v) is left out, the file itself
    kept; a link to a file elsewhere is read. Links to folders are not followed (a cycle would never end)."""
    candidates, skipped = [], Counter()
    for folder, dirs, names in os.walk(root):
        skipped["linked_folder"] += sum(not d.startswith(".") and os.path.islink(os.path.join(folder, d)) for d in dirs)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or (suffixes and not name.lower().endswith(suffixes)):
                continue
            candidates.append(Path(folder) / name)
    if not any(f.is_symlink() for f in candidates):
        return candidates, +skipped  # the usual case: no path to resolve
    real = {f.resolve() for f in candidates if not f.is_symlink()}
    files, linked = [], set()
    for file in candidates:
        if file.is_symlink():
            if not file.exists():
                skipped["broken_link"] += 1
                continue
            target = file.resolve()
            if target in real or target in linked:
                skipped["link"] += 1
                continue
            linked.add(target)
        files.append(file)
    return files, +skipped


def decoded(data: bytes, undecodable_share: float) -> tuple[str | None, bool]:
    """(text, repaired): UTF-8 text; or, where at most `undecodable_share` of its characters are bytes
    that do not decode (one Latin-1 `é` in a UTF-8 note), the text with each replaced by U+FFFD, rather
    than the whole file lost for one byte; else (None, False). A file in another encoding (Shift-JIS,
    mostly-Latin-1 prose) has far more such bytes and is still left out, not read as mojibake."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    if undecodable_share <= 0:
        return None, False
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    return (text, True) if bad <= undecodable_share * len(text) else (None, False)
