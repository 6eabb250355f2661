"""Re-materialise the shared corpus JSONL as the raw files it was extracted from."""

import json
from pathlib import Path


def materialize_corpus(corpus_dir: Path, dest: Path, copies: int = 1) -> dict[str, int]:
    """Writes <dest>/<source>/<path> per record (copies > 1: <dest>/copyN/<source>/<path> with a small
    edit in each copy, for scale tests). Returns files written per source."""
    written: dict[str, int] = {}
    for jsonl in sorted(corpus_dir.glob("*.jsonl")):
        for line in jsonl.open(encoding="utf-8"):
            record = json.loads(line)
            for copy in range(copies):
                root = dest if copies == 1 else dest / f"copy{copy}"
                path = root / record["source"] / record["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                text = record["text"] if copy == 0 else f"{record['text']}\n// copy {copy}\n"
                path.write_text(text, encoding="utf-8")
                written[record["source"]] = written.get(record["source"], 0) + 1
    return written
