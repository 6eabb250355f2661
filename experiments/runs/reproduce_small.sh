#!/usr/bin/env bash
# The small-scale reproduction of ChipNeMo and ChipAlign (issue 10): every step, then
# experiments/reports/<date>[-fast]/REPORT.md. A rerun skips finished steps and resumes the others.
#   bash experiments/runs/reproduce_small.sh            # full variant, a few hours on 2 CPU cores
#   bash experiments/runs/reproduce_small.sh --fast     # under 20 minutes
#   bash experiments/runs/reproduce_small.sh --fast only=[report]   # extra arguments go to reproduce.py
# The full run can span machines: the records in its report's runs/ folder are its state. Commit the
# report of an unfinished run (e.g. report_dir=experiments/reports/full-in-progress), then elsewhere:
#   bash experiments/runs/reproduce_small.sh 'out=${paths.cache_dir}/reproduce_small/full' \
#     resume_from=experiments/reports/full-in-progress/runs report_dir=experiments/reports/full-in-progress
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
variant=full
if [[ "${1:-}" == "--fast" ]]; then variant=fast; shift; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PY" reproduce.py "variant=$variant" "$@"
