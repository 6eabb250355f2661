"""JSONL shards written atomically: each shard is a temp file until it is full or the run ends."""

import json
import os
from pathlib import Path


class ShardWriter:
    def __init__(self, folder: Path, docs_per_shard: int):
        self.folder = folder
        self.docs_per_shard = docs_per_shard
        self.index = 0
        self.count = 0
        self.handle = None
        self.tmp: Path | None = None
        self.written: list[str] = []

    def write(self, record: dict) -> None:
        if self.handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.tmp = self.folder / f".part-{self.index:05d}.jsonl.tmp"
            self.handle = open(self.tmp, "w", encoding="utf-8")
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1
        if self.count == self.docs_per_shard:
            self._finish_shard()

    def _finish_shard(self) -> None:
        self.handle.close()
        final = self.folder / f"part-{self.index:05d}.jsonl"
        os.replace(self.tmp, final)
        self.written.append(str(final))
        self.handle, self.tmp, self.count = None, None, 0
        self.index += 1

    def close(self) -> None:
        if self.handle is not None:
            self._finish_shard()
