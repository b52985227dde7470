#!/usr/bin/env bash
# A short real linnet run on one GPU, end to end through the lessons, on the course corpus:
#   01 (32k tokenizer) → 04 (shards) → 05 (linnet preset, depth 12, compiled, bf16) → 06 (full HellaSwag).
# The batch is BATCH tokens per step (default 65,536, not 524,288) so that a few hundred steps fit in a few
# minutes; the course corpus is ~4M tokens, so 200 steps of 65,536 are ~3 passes over it (linnet made 2–3).
# Usage: [STEPS=200] [BATCH=65536] bash bench/short_run.sh [WORK_DIR] [RESULTS_DIR]   (numbers: BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-out/short_run}"
results="${2:-$work/results}"
corpus=../shared/data/corpus
steps="${STEPS:-200}"
batch="${BATCH:-65536}"
mkdir -p "$work" "$results"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
time python3 01_tokenizer.py --data "$corpus" --vocab-size 32768 --out "$work/tok"
time python3 04_data.py --source python-docs="$corpus/python-docs.jsonl" --source shakespeare="$corpus/shakespeare.jsonl" \
  --tokenizer "$work/tok/tokenizer.json" --out "$work/data" --shard-tokens 1000000 --val-tokens 200000
time python3 05_train.py --preset linnet --tokenizer "$work/tok/tokenizer.json" --data-dir "$work/data" --out "$work/train" \
  --total-batch-tokens "$batch" --micro-batch 32 --max-steps "$steps" --planned-steps "$steps" \
  --eval-every 50 --hellaswag-every 100 --checkpoint-every "$steps"
time python3 06_eval.py --checkpoint "$work/train/latest.pt" --tokenizer "$work/tok/tokenizer.json" --data-dir "$work/data" \
  --out "$work/eval" --batch-size 512 --sample "The history of"
cp "$work"/tok/*.png "$work"/data/*.png "$work"/data/manifest.json "$work"/train/*.png "$work"/train/log.jsonl \
  "$work"/eval/*.png "$results"/ 2>/dev/null || true
