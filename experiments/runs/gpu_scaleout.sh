#!/usr/bin/env bash
# GPU measurements of the scale-out issue: gpu tests, then tokens/s and MFU of DAPT steps for the
# SmolLM2-135M architecture (random weights) and a ~1.1B Llama (random weights), single GPU (DDP
# strategy of one) and FSDP, bf16. Usage (repo root, CUDA machine):
#   SMOL=/path/to/smollm2/random/folder DOMAIN=corpus.jsonl GENERAL=general.jsonl OUT=outdir bash experiments/runs/gpu_scaleout.sh
set -euo pipefail
: "${SMOL:?an HF folder with the SmolLM2-135M architecture}" "${DOMAIN:?a corpus JSONL}" "${GENERAL:?a general-text JSONL}" "${OUT:=gpu_scaleout}"
STEPS=${STEPS:-30}
DATA=(data.seq_len=2048 "~data.sources" "+data.sources.domain.path=$DOMAIN" "+data.sources.domain.epochs=8" "data.val_sources.general.path=$GENERAL"
      "data.val_max_bytes=16384" stage.validate_before=false callbacks.progress=null callbacks.checkpoint=null trainer.max_steps=$STEPS)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m pytest -q -m gpu tests/test_gpu.py -p no:warnings || true
run() { name=$1; shift; python3 train.py "${DATA[@]}" "$@" hydra.run.dir="$OUT/$name" >> "$OUT/$name.log" 2>&1 && python3 benchmarks/mfu.py "$OUT/$name" || { echo "$name failed"; tail -5 "$OUT/$name.log"; }; }
mkdir -p "$OUT"
SMOL_ARGS=(model=hf_folder model.path="$SMOL" "model.doc_separator='<|endoftext|>'")
run smol_bf16mixed "${SMOL_ARGS[@]}" trainer=gpu data.micro_batch_size=8 data.global_batch_size=32
run smol_fsdp "${SMOL_ARGS[@]}" trainer=fsdp trainer.devices=1 trainer.precision=bf16-true trainer.strategy.activation_checkpointing=false data.micro_batch_size=8 data.global_batch_size=32
run 1b_bf16mixed model=llama_1b_random trainer=gpu data.micro_batch_size=4 data.global_batch_size=16
run 1b_bf16true model=llama_1b_random trainer=gpu trainer.precision=bf16-true model.dtype=bfloat16 data.micro_batch_size=8 data.global_batch_size=16
run 1b_fsdp model=llama_1b_random trainer=fsdp trainer.devices=1 trainer.precision=bf16-true trainer.strategy.activation_checkpointing=false data.micro_batch_size=8 data.global_batch_size=16
run 1b_fsdp_ckpt model=llama_1b_random trainer=fsdp trainer.devices=1 trainer.precision=bf16-true model.dtype=bfloat16 data.micro_batch_size=8 data.global_batch_size=16
