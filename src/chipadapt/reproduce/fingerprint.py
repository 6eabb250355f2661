"""A model folder's weights in a few tens of kilobytes: enough to tell, on another machine, whether a rebuilt
model is the one a reproduction's later steps were measured with.

Per tensor: its shape, its L2 norm and a fixed sample of its values (positions drawn from the tensor's
name, so every machine samples the same ones), plus each weight file's SHA-256. The weights stay out
of the repository; the fingerprint travels with the step's records (report/archive.py), and a fresh
machine that retrains the model (rebuild.py) compares against it."""

import csv
import json
import math
import statistics
import zlib
from pathlib import Path

from chipadapt.io.hashing import sha256_file

FINGERPRINT = "model.fingerprint.json"  # beside the step's model/ folder
# Beyond rebuild.REBUILD_TOLERANCE, up to ROUNDING_DRIFT, a rebuild whose logged training losses equal
# the recorded ones at every step is the same run computed on another host: AdamW's steps are about lr
# in size even where a gradient is rounding noise, so float rounding between CPUs grows in the weights
# (the reproduction's retriever: 5.8e-4 from the recorded one, its 12 losses equal to 5e-7, the same
# ranked passages for all 108 test questions; experiments/LOG.md, 2026-12-05 session 9). A loss is
# compared on the run's scale (the larger of itself and the recorded losses' median): late SFT losses
# near 1e-3 differ by a few 1e-4 of themselves between hosts; the same runs' chip-model DAPT and SFT
# stay within 2.1e-5 on that scale.
ROUNDING_DRIFT = 1e-3
LOSS_TOLERANCE = 1e-4
SAMPLES = 8  # values per tensor
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def weight_files(model_dir: Path) -> list[Path]:
    if not model_dir.is_dir():
        return []
    return sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def tensors(path: Path):
    """(name, tensor) of one weight file, one tensor in memory at a time where the format allows."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open has keys(), no iteration
                yield name, handle.get_tensor(name)
    else:
        yield from torch.load(path, map_location="cpu", weights_only=True).items()


def tensor_summary(name: str, tensor) -> dict:
    import torch

    flat = tensor.detach().reshape(-1)
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    positions = torch.randint(0, max(flat.numel(), 1), (min(SAMPLES, flat.numel()),), generator=generator)
    # The norm accumulated in float64 a slice at a time: no float64 copy of a 70B model's embedding.
    norm = sum(float(chunk.to(torch.float64).square().sum()) for chunk in flat.split(1 << 22)) ** 0.5
    return {
        "shape": list(tensor.shape),
        "norm": norm,
        "positions": positions.tolist(),
        "values": flat[positions].to(torch.float64).tolist(),
    }


def fingerprint(model_dir: Path) -> dict:
    files = weight_files(model_dir)
    return {
        "files": {p.name: sha256_file(p) for p in files},
        "tensors": {name: tensor_summary(name, t) for p in files for name, t in tensors(p)},
    }


def ensure_fingerprint(step_folder: Path) -> Path | None:
    """Write <step>/model.fingerprint.json when the step has a model and no fingerprint newer than it."""
    model_dir, target = step_folder / "model", step_folder / FINGERPRINT
    if not model_dir.is_dir() or not weight_files(model_dir):
        return None
    newest = max(p.stat().st_mtime for p in weight_files(model_dir))
    if target.is_file() and target.stat().st_mtime >= newest:
        return target
    from chipadapt.io.atomic import write_text_atomic

    write_text_atomic(target, json.dumps(fingerprint(model_dir), separators=(",", ":")) + "\n")
    return target


def deviation(recorded: dict, rebuilt: dict) -> float:
    """0.0 for the same weight files; otherwise the largest relative difference over the tensors' norms
    and sampled values (relative to the tensor's RMS); inf when the tensors differ in name or shape, or
    a rebuilt value is not finite (a diverged run)."""
    if recorded["files"] == rebuilt["files"]:
        return 0.0
    if recorded["tensors"].keys() != rebuilt["tensors"].keys():
        return float("inf")
    worst = 0.0
    for name, before in recorded["tensors"].items():
        after = rebuilt["tensors"][name]
        if before["shape"] != after["shape"] or before["positions"] != after["positions"]:
            return float("inf")
        count = 1
        for size in before["shape"]:
            count *= size
        rms = max(before["norm"] / max(count, 1) ** 0.5, 1e-12)
        if not all(math.isfinite(v) for v in [after["norm"], *after["values"]]):
            return float("inf")
        worst = max(
            worst,
            abs(before["norm"] - after["norm"]) / max(before["norm"], 1e-12),
            *(abs(a - b) / rms for a, b in zip(before["values"], after["values"], strict=True)),
        )
    return worst


def read_fingerprint(path: Path) -> dict:
    return json.loads(path.read_text())


def training_losses(metrics_csv: Path) -> dict[int, float]:
    """{step: train/loss} from Lightning's CSV log (a step logged twice, by a resumed run, keeps its last
    row); {} without the file or the column, or when a row cannot be read (a run killed mid-write)."""
    try:
        with metrics_csv.open(newline="", encoding="utf-8") as handle:
            return {
                int(float(row["step"])): float(row["train/loss"])
                for row in csv.DictReader(handle)
                if row.get("train/loss") and row.get("step")
            }
    except (OSError, ValueError, csv.Error, UnicodeDecodeError):
        return {}


def loss_difference(recorded: Path, rebuilt: Path) -> float | None:
    """The largest difference between the two runs' training losses at the same step, relative to the
    larger of the recorded loss and the recorded losses' median; None unless both logged the same steps."""
    before, after = training_losses(recorded), training_losses(rebuilt)
    if not before or before.keys() != after.keys():
        return None
    scale = statistics.median(abs(v) for v in before.values())
    worst = max(abs(before[k] - after[k]) / max(abs(before[k]), scale, 1e-12) for k in before)
    return worst if math.isfinite(worst) else None
