"""Data preparation: first run (tokenize into the cache) vs. a rerun of the same config (cache hit).

  python benchmarks/data_prep.py                      # the shared corpus when present, else the sample
  python benchmarks/data_prep.py data=sample_corpus   # any train.py override

Prints the rerun/first-run time ratio (target < 0.05) and the packing efficiency (target >= 99%).
"""

import logging
import tempfile
import time
from pathlib import Path

from _config import benchmark_config
from hydra.utils import instantiate

from chipadapt.models.hf_folder import load_tokenizer, resolve_model_folder


def prepare(cfg, tokenizer, cache_dir: str):
    datamodule = instantiate(cfg.stage.datamodule)(
        data=cfg.data,
        tokenizer=tokenizer,
        separator_token=cfg.model.doc_separator,
        token_cache_dir=cache_dir,
        seed=cfg.seed,
    )
    start = time.perf_counter()
    datamodule.prepare_data()
    datamodule.setup("fit")
    return time.perf_counter() - start, datamodule


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus"
        defaults = ["data=shared_corpus"] if shared.is_dir() else []
        cfg = benchmark_config(defaults, tmp)
        tokenizer = load_tokenizer(resolve_model_folder(cfg.model))
        first, dm = prepare(cfg, tokenizer, f"{tmp}/tokens")
        second, dm2 = prepare(cfg, tokenizer, f"{tmp}/tokens")
        assert dm2.stats["cache_misses"] == 0 and len(dm2.train_set) == len(dm.train_set)
        tokens = sum(r.train_tokens for r in dm.blend)
        print(f"data={cfg.data.name} model={cfg.model.name} seq_len={cfg.data.seq_len}")
        print(
            f"first run  : {first:8.3f} s  ({tokens:,} training tokens before blending; {tokens / first:,.0f} tokens/s)"
        )
        print(
            f"second run : {second:8.3f} s  (cache hits {dm2.stats['cache_hits']}, misses {dm2.stats['cache_misses']})"
        )
        print(f"ratio second/first = {second / first:.4f}  (target < 0.05)")
        print(
            f"packing efficiency = {100 * dm.stats['packing_efficiency']:.3f}%  (target >= 99%) "
            f"over {len(dm.train_set):,} sequences"
        )


if __name__ == "__main__":
    main()
