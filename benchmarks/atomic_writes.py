"""What an atomic file write (io/atomic.py write_json_atomic) costs in a folder of 10, 1,000 and 20,000
files, against a plain write + fsync + rename of the same JSON in the same folder, measured in one run.

  python benchmarks/atomic_writes.py [FOLDER]   # scratch folders are made under FOLDER (default: the temp dir)

Each write first removes what a killed writer of the same file left, which means looking through the
folder; a folder of 20,000 shards or cached entries must not make every manifest write much slower.
The search runs at a process's first write of a file: timed apart ("a first write", to a new file each
time) from the writes that follow ("a rewrite" of manifest.json). Rounds alternate the two writers so
machine noise hits both; prints per size and kind the median time of a write, the median ratio of the
rounds (target <= 2 at 20,000) with their interquartile range, and the machine's load, which a shared
machine's numbers depend on (fsync's time on a busy disk varies tenfold: compare ratios, not times).
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from chipadapt.io import strict_json
from chipadapt.io.atomic import write_json_atomic

SIZES, ROUNDS, WRITES = (10, 1_000, 20_000), 15, 20
RECORD = {"status": "running", "step": 123, "metrics": {"val/loss": 2.5, "val/ppl": 12.18}, "tags": ["a"] * 20}


def plain_write(path: Path, obj) -> None:
    """The reference: the same bytes, written to a temporary beside `path`, flushed and renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(strict_json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def seconds_per_write(writer, path: Path, first: bool = False) -> float:
    """`first`: each write to a file not written before in this process (which looks through the folder)."""
    paths = (
        [path.with_name(f"new_{time.perf_counter_ns()}_{i}.json") for i in range(WRITES)] if first else [path] * WRITES
    )
    start = time.perf_counter()
    for target in paths:
        writer(target, RECORD)
    seconds = (time.perf_counter() - start) / WRITES
    if first:
        for target in paths:
            target.unlink()
    return seconds


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def main(scratch: str | None) -> None:
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cpus {os.cpu_count()}")
    for size in SIZES:
        with tempfile.TemporaryDirectory(dir=scratch, prefix="atomic_writes.") as folder:
            folder = Path(folder)
            for i in range(size - 1):  # the folder holds `size` files with the manifest
                (folder / f"shard_{i:06d}.json").touch()
            path = folder / "manifest.json"
            plain_write(path, RECORD)
            write_json_atomic(path, RECORD)  # warm both paths (imports, directory cache)
            for what, first in (("a rewrite", False), ("a first write", True)):
                atomic, plain, ratios = [], [], []
                for _ in range(ROUNDS):
                    p = seconds_per_write(plain_write, path, first)
                    a = seconds_per_write(write_json_atomic, path, first)
                    plain.append(p)
                    atomic.append(a)
                    ratios.append(a / p)
                low, high = quartiles(ratios)
                print(
                    f"{size:>6} files, {what:13s}: write_json_atomic {statistics.median(atomic) * 1e6:7.0f} us, "
                    f"plain write+rename {statistics.median(plain) * 1e6:7.0f} us, "
                    f"ratio {statistics.median(ratios):.2f} (IQR {low:.2f}-{high:.2f}, "
                    f"{ROUNDS} rounds x {WRITES} writes)"
                )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
