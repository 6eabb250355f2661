#!/usr/bin/env bash
# GPU check of the DAPT stage: the gpu-marked tests, a bf16-mixed DAPT run and the framework
# overhead benchmark on GPU. Usage (from the repo root, on a CUDA machine with the project installed):
#   MODEL=/path/to/hf/folder DOMAIN=corpus.jsonl GENERAL=general.jsonl OUT=outdir bash experiments/runs/gpu_check.sh
set -euo pipefail
: "${MODEL:?an HF model folder}" "${DOMAIN:?a corpus JSONL}" "${GENERAL:?a general-text JSONL}" "${OUT:=gpu_check}"
SEQ=${SEQ:-2048}
DATA=(data.seq_len=$SEQ "~data.sources" "+data.sources.domain.path=$DOMAIN" "data.val_sources.general.path=$GENERAL")
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m pytest -q -m gpu tests/test_gpu.py -p no:warnings
python3 train.py model=hf_folder model.path="$MODEL" "model.doc_separator='<|endoftext|>'" trainer=gpu \
  "${DATA[@]}" data.micro_batch_size=8 data.global_batch_size=32 trainer.max_steps=${STEPS:-40} \
  callbacks.progress=null hydra.run.dir="$OUT/dapt"
python3 - "$OUT/dapt/metrics.csv" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r.get("train/tokens_per_s")]
rates = [float(r["train/tokens_per_s"]) for r in rows[5:]]  # skip warm-up steps
print(f"DAPT bf16-mixed: {len(rates)} steps after 5 warm-up, median {statistics.median(rates):,.0f} tokens/s")
PY
python3 benchmarks/framework_overhead.py model=hf_folder model.path="$MODEL" "model.doc_separator='<|endoftext|>'" \
  trainer=gpu "${DATA[@]}" data.micro_batch_size=8 data.global_batch_size=16 callbacks.progress=null
