#!/usr/bin/env bash
# Issue 18's "same behaviour": the training stages at two commits on the same inputs, losses and
# validation figures side by side. Usage: bash experiments/runs/same_figures.sh OLD NEW OUTDIR
# (each commit runs from its own worktree; the installed environment is the same).
set -euo pipefail
old=$1 new=$2 out=$3
repo=$(cd "$(dirname "$0")/../.." && pwd)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
for commit in "$old" "$new"; do
  wt="$out/wt_$commit"
  [ -d "$wt" ] || git -C "$repo" worktree add -q --detach "$wt" "$commit"
  run() { name=$1; shift; (cd "$wt" && PYTHONPATH="$wt/src" "$repo/.venv/bin/python" train.py "$@" \
      callbacks.progress=null paths.shared_data="$repo/../shared/data" hydra.run.dir="$out/$commit/$name" >> "$out/$commit/$name.log" 2>&1) || echo "$commit $name failed"; }
  mkdir -p "$out/$commit"
  run dapt experiment=reproduce_dapt tokenizer=base trainer.max_steps=4 data.seq_len=256 data.global_batch_size=4 data.val_max_bytes=4096
  run sft stage=sft data.seq_len=256 data.global_batch_size=4 trainer.max_steps=4 data.val_max_conversations=8
  run attribute stage=attribute_model trainer.max_steps=4 data.seq_len=256
  run retriever stage=retriever retriever.synthetic.method=ict retriever.synthetic.num_samples=160 trainer.max_steps=4 \
      retriever.encoder.max_passage_tokens=192 retriever.eval_queries=null
done
"$repo/.venv/bin/python" - "$out" "$old" "$new" <<'PY'
import csv, json, sys
from pathlib import Path
out, old, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def losses(d):
    f = d / "metrics.csv"
    return [float(r["train/loss"]) for r in csv.DictReader(f.open()) if r.get("train/loss")] if f.exists() else None
for stage in ("dapt", "sft", "attribute", "retriever"):
    a, b = out / old / stage, out / new / stage
    la, lb = losses(a), losses(b)
    ma = json.loads((a / "manifest.json").read_text()).get("metrics", {}) if (a / "manifest.json").exists() else {}
    mb = json.loads((b / "manifest.json").read_text()).get("metrics", {}) if (b / "manifest.json").exists() else {}
    diff = max((abs(x - y) for x, y in zip(la or [], lb or [])), default=None)
    print(f"{stage}: losses {old} {la}\n{'':>{len(stage)+2}}losses {new} {lb}\n  max |diff| {diff}")
    for key in ("after", "val"):
        if key in ma or key in mb:
            print(f"  {key} {old}: {json.dumps(ma.get(key))}\n  {key} {new}: {json.dumps(mb.get(key))}")
PY
