"""Where chipadapt's cache is, for code that runs below the composed config.

conf/paths/default.yaml resolves `paths.cache_dir` the same way; this is for the few places that
only see a model key or a report (GGUF conversions, portable report paths)."""

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("CHIPADAPT_CACHE", "~/.cache/chipadapt")).expanduser()
