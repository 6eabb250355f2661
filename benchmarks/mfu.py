"""Tokens/s and model FLOPs utilisation of a finished training run:

  python benchmarks/mfu.py RUN_DIR [PEAK_TFLOPS]      # default peak: H100 SXM dense bf16, 989 TFLOP/s

Training FLOPs per token = 6 x (non-embedding parameters + the output projection) + 12 x layers x
hidden x sequence (attention scores and values, forward and backward), as in the PaLM paper's MFU.
The tokens/s are the median of `train/tokens_per_s` after the first 5 steps (warm-up, compilation).
"""

import csv
import json
import statistics
import sys
from pathlib import Path


def flops_per_token(config: dict, seq_len: int) -> float:
    h, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    heads, kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim") or h // heads
    attn = h * head_dim * heads * 2 + h * head_dim * kv * 2  # q, o and k, v projections
    mlp = 3 * h * config["intermediate_size"]  # gate, up, down
    matmul_params = layers * (attn + mlp) + h * vocab  # + the output projection
    return 6 * matmul_params + 12 * layers * h * seq_len


def main() -> None:
    run = Path(sys.argv[1])
    peak = float(sys.argv[2]) * 1e12 if len(sys.argv) > 2 else 989e12
    config = json.loads((run / "model" / "config.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    seq_len = manifest["config"]["data"]["seq_len"]
    world = (
        manifest["config"]["trainer"]["devices"]
        if isinstance(manifest["config"]["trainer"]["devices"], int) and manifest["config"]["trainer"]["devices"] > 0
        else 1
    )
    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r.get("train/tokens_per_s")]
    rates = [float(r["train/tokens_per_s"]) for r in rows[5:]]
    tokens_per_s = statistics.median(rates)
    fpt = flops_per_token(config, seq_len)
    mfu = tokens_per_s * fpt / (peak * world)
    print(
        f"{run.name}: {tokens_per_s:,.0f} tokens/s over {len(rates)} steps, {fpt / 1e9:.2f} GFLOP/token, "
        f"MFU {100 * mfu:.1f}% of {peak / 1e12:.0f} TFLOP/s x {world} GPU(s)"
    )


if __name__ == "__main__":
    main()
