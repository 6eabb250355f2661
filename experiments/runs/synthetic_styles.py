"""Synthetic retriever data in every query style, and one training file per left-out style (issue 21).

  python experiments/runs/synthetic_styles.py OUT_DIR [NUM_SAMPLES] [METHOD]   # METHOD: llm (default) or ict

Writes OUT_DIR/all.jsonl, OUT_DIR/without_<style>.jsonl (the same groups minus one style's, so each
ablation differs from `all` by that style alone) and OUT_DIR/report.json with the generation time.
OUT_DIR is written beside itself and swapped in when complete; an existing OUT_DIR that this script
did not write is refused before any work.
Train on one with `train.py stage=retriever retriever.train_file=OUT_DIR/all.jsonl ...`.
"""

import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

import chipadapt  # noqa: F401  (resolvers)
from chipadapt.errors import exit_on_user_error
from chipadapt.io.outputs import check_output_folder, publish_folder
from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer, resolve_model_folder
from chipadapt.retrieval.build import load_passages
from chipadapt.retrieval.retrievers import BM25Retriever
from chipadapt.retrieval.synthetic import LLMHelper, synthesize

ROOT = Path(__file__).resolve().parents[2]
# The shares of the styles; error messages are rare in the docs, so their share is small.
STYLES = {"question": 0.4, "howto": 0.2, "keyword": 0.2, "flag": 0.2, "error": 0.01}
COMMAND = "experiments/runs/synthetic_styles.py"


def main() -> None:
    out = Path(sys.argv[1])
    num_samples = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    method = sys.argv[3] if len(sys.argv) > 3 else "llm"
    check_output_folder(out, COMMAND, "OUT_DIR", overwrite=True)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["stage=retriever"])
    syn = cfg.retriever.synthetic
    passages = load_passages(None, cfg.passages)
    miner = BM25Retriever(**cfg.retriever.bm25)
    miner.index(passages)
    llm = None
    start = time.perf_counter()
    if method == "llm":
        folder = resolve_model_folder(cfg.model)
        model = load_causal_lm(folder, "float32", "sdpa").eval()
        llm = LLMHelper(model, load_tokenizer(folder), syn.batch_size, syn.max_new_tokens, syn.passage_chars)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    groups, report = synthesize(
        passages,
        num_samples,
        method,
        miner,
        llm,
        syn.mine_depth,
        syn.judge_depth,
        syn.judge_margin,
        syn.num_negatives,
        syn.near_duplicate_jaccard,
        syn.min_passage_chars,
        cfg.seed,
        styles=STYLES,
    )
    report.update({"generation_s": round(time.perf_counter() - start, 1), "model_load_s": round(load_s, 1)})
    records = [g.to_tevatron() for g in groups]
    with publish_folder(out, COMMAND) as staging:
        write = lambda name, rows: (staging / name).write_text("".join(json.dumps(r) + "\n" for r in rows))  # noqa: E731
        write("all.jsonl", records)
        for style in STYLES:
            write(f"without_{style}.jsonl", [r for r in records if r["style"] != style])
        (staging / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    exit_on_user_error(main)
