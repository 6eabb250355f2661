"""Curation speed and memory on the shared corpus (re-materialised as raw files), and on a copy 10x
larger (each copy slightly edited, so exact dedup does not short-cut it). One run, both sizes.

  python benchmarks/curate.py [curate overrides, e.g. data.curate.workers=2]

Prints files/s, MB/s, duplicates and peak RSS per size, and the 10x/1x ratios: memory should stay
flat (texts are streamed; only hashes and MinHash signatures are kept), throughput should hold.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers.raw_corpus import materialize_corpus  # noqa: E402

SHARED = Path(os.environ.get("CHIPADAPT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def run_curation(inputs: list[Path], out: Path) -> tuple[dict, float, float]:
    command = [
        sys.executable,
        "-m",
        "chipadapt.data.curate",
        f"data.curate.inputs=[{','.join(map(str, inputs))}]",
        f"hydra.run.dir={out}",
        *sys.argv[1:],
    ]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise SystemExit(f"curation failed: {' '.join(command)}")
    return json.loads((out / "corpus" / "curation_report.json").read_text()), usage.ru_maxrss / 1024, wall


def main() -> None:
    if not (SHARED / "corpus").is_dir():
        raise SystemExit(f"{SHARED / 'corpus'} not found (set CHIPADAPT_SHARED_DATA)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for copies in (1, 10):
            raw = Path(tmp) / f"raw{copies}"
            materialize_corpus(SHARED / "corpus", raw, copies=copies)
            inputs = sorted(raw.iterdir())
            report, rss, wall = run_curation(inputs, Path(tmp) / f"out{copies}")
            results[copies] = (report, rss)
            d = report["duplicates"]
            print(
                f"{copies:>2}x: {report['files_seen']:,} files, {report['bytes_seen'] / 1e6:.1f} MB "
                f"in {report['seconds']:.1f} s "
                f"({report['files_per_s']:.0f} files/s, {report['mb_per_s']:.2f} MB/s; {wall:.1f} s with start-up); "
                f"exact dups {d['exact']}, near dups {d['near']}, written {report['documents_written']:,}; "
                f"peak RSS {rss:.0f} MB"
            )
    (r1, m1), (r10, m10) = results[1], results[10]
    print(
        f"ratio 10x/1x: input bytes {r10['bytes_seen'] / r1['bytes_seen']:.1f}, peak RSS {m10 / m1:.2f}, "
        f"MB/s {r10['mb_per_s'] / r1['mb_per_s']:.2f}"
    )


if __name__ == "__main__":
    main()
