#!/usr/bin/env bash
# The CPU measurements of the alignment (#4) and evaluation (#7) issues, one after the other:
#   SFT of SmolLM2-135M-Instruct on the OASST + EDA-script blend (held-out eda_script answer loss before/after),
#   SteerLM's attribute model on OASST human labels (MAE/Spearman vs a constant baseline),
#   a short SteerLM run, and base vs DAPT vs merged (lambda 0.6) on the evaluation tasks (subsets).
# Usage: experiments/runs/measure_alignment_eval.sh OUT DAPT_MODEL MERGED_MODEL
set -euo pipefail
OUT=${1:?output folder}; DAPT=${2:?DAPT model folder}; MERGED=${3:?merged model folder}
export HF_HUB_OFFLINE=1
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"

$PY train.py stage=sft data.seq_len=512 data.global_batch_size=4 data.val_max_conversations=32 trainer.max_steps=40 \
    callbacks.progress=null hydra.run.dir="$OUT/sft" >> "$OUT/sft.log" 2>&1

$PY train.py stage=attribute_model data.seq_len=256 data.micro_batch_size=4 data.global_batch_size=16 trainer.max_steps=30 \
    callbacks.progress=null hydra.run.dir="$OUT/attribute_model" >> "$OUT/attribute_model.log" 2>&1

$PY train.py stage=steerlm data.seq_len=512 data.global_batch_size=4 data.val_max_conversations=16 trainer.max_steps=15 \
    callbacks.progress=null hydra.run.dir="$OUT/steerlm" >> "$OUT/steerlm.log" 2>&1

TASKS='eval=[perplexity,chip_mcq,mcq,ifeval,qa_rouge,eda_script,verilog,bug_summary]'
LIMITS="eval.mcq.limit=200 eval.ifeval.limit=30 eval.ifeval.max_new_tokens=128 eval.eda_script.limit=40 eval.eda_script.max_new_tokens=160 \
        eval.verilog.limit=20 eval.verilog.max_new_tokens=256 eval.qa_rouge.max_new_tokens=64 eval.bug_summary.max_new_tokens=96"
for name in base dapt merged; do
  case $name in base) MODEL="";; dapt) MODEL="model.path=$DAPT";; merged) MODEL="model.path=$MERGED";; esac
  $PY evaluate.py $MODEL "$TASKS" $LIMITS hydra.run.dir="$OUT/eval_$name" >> "$OUT/eval_$name.log" 2>&1
done
$PY compare.py "runs=[$OUT/eval_base,$OUT/eval_dapt,$OUT/eval_merged]" "labels=[base,dapt,merged_0.6]" hydra.run.dir="$OUT/compare" >> "$OUT/compare.log" 2>&1
