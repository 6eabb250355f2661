"""Committed reports name no machine's paths: absolute paths become repo-relative or `$CHIPADAPT_CACHE/...`.

A report and its `runs/` records travel (README links them, reviewers read them on other machines),
so `/home/alice/.cache/chipadapt/models/x` is written `$CHIPADAPT_CACHE/models/x`, the repository's
own files and run folders relative to it (`outputs/reproduce_small/full/sft`), its parent's `..`
(`../shared/data`), a reproduction folder elsewhere `$REPRODUCE_OUT` (in the cache: `$CHIPADAPT_CACHE/...`),
and what is left under the home folder `~`. Applied to REPORT.md, headline.md and every record copied beside them.
"""

import os
import re
from pathlib import Path

from chipadapt.io.cache_root import cache_root

ROOT = Path(__file__).resolve().parents[3]  # the repository


def both(path: Path, name: str) -> list[tuple[Path, str]]:
    """A path behind a symlink appears in text in either form: commands name it as configured, libraries
    that resolve it (Hydra, Lightning) as the real one."""
    return [(path, name), (path.resolve(), name)]


class PortablePaths:
    def __init__(self, out: Path):
        root = ROOT.resolve()  # relative names are computed between real paths
        out = Path(os.path.abspath(out))
        cache = Path(os.path.abspath(cache_root()))
        rules = [*both(cache, "$CHIPADAPT_CACHE")]
        if not out.resolve().is_relative_to(cache.resolve()):  # in the cache, named as the cache's
            real = out.resolve()
            rules += both(out, os.path.relpath(real, root) if real.is_relative_to(root) else "$REPRODUCE_OUT")
        rules += [*both(ROOT, "."), *both(ROOT.parent, "..")]
        home = Path.home()
        if home.resolve() != Path("/"):
            rules += both(home, "~")
        # Longest first, so a folder inside another is named by its own rule.
        rules = sorted({str(p): name for p, name in rules if str(p) != "/"}.items(), key=lambda item: -len(item[0]))
        # A prefix counts only as whole path components: /work/main must not rewrite /work/main2, nor
        # /root/.cache the middle of /mnt/backup/root/.cache.
        self.patterns = [
            (re.compile(r"(?<![\w.~$/-])" + re.escape(prefix) + r"(?=/|(?![\w.-]))"), name) for prefix, name in rules
        ]

    def __call__(self, text: str) -> str:
        for pattern, name in self.patterns:
            text = pattern.sub(name.replace("\\", "\\\\"), text)
        # "./outputs/x" reads better as "outputs/x"; a bare "." (the repository itself) stays.
        return re.sub(r"(?<![\w.$~])\./(?=[\w$])", "", text)
