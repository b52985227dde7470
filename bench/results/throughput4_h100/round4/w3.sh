#!/bin/bash
# Round 4, call 3 (after u1.sh, u2.sh on the same machine): the pair for item 6 (this repo's default step and the
# original code's, same start), then the FP8-in-quack probe. Carry .gpu (holds pipeline/model.py, the original's).
set -u
T0=$(date +%s); left() { echo $(( 570 - ($(date +%s) - T0) )); }
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
date -u | tee $OUT/device.txt; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a $OUT/device.txt
T=$(date +%s); ( timeout 200 python3 bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --steps 3 --json $OUT/pair.jsonl > $OUT/ours.log 2>&1 ); echo "ours rc=$? $(( $(date +%s) - T )) s $(grep -o '"tokens_per_s": [0-9]*, "mfu_percent": [0-9.]*, "peak_memory_gb": [0-9.]*' $OUT/ours.log)"
[ "${1:-}" = grouped ] && { T=$(date +%s); ( timeout 150 python3 bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --steps 3 --moe grouped --json $OUT/pair.jsonl > $OUT/grouped.log 2>&1 ); echo "grouped rc=$? $(( $(date +%s) - T )) s $(grep -o '"tokens_per_s": [0-9]*, "mfu_percent": [0-9.]*, "peak_memory_gb": [0-9.]*' $OUT/grouped.log)"; }
T=$(date +%s); ( timeout $(( $(left) - 70 )) python3 bench/original.py --model-py .gpu/pipeline/model.py --json $OUT/pair.jsonl > $OUT/original.log 2>&1 ); echo "original rc=$? $(( $(date +%s) - T )) s $(grep -o '"ms": [0-9.]*, "tokens_per_s": [0-9]*' $OUT/original.log) $(grep -o '"peak_memory_gb": [0-9.]*' $OUT/original.log) $(tail -c 300 $OUT/original.log | grep -i error)"
[ $(left) -gt 40 ] && { T=$(date +%s); ( timeout $(( $(left) - 5 )) python3 bench/fp8_quack.py --json $OUT/fp8_quack.jsonl > $OUT/fp8_quack.log 2>&1 ); echo "fp8 rc=$? $(( $(date +%s) - T )) s"; cat $OUT/fp8_quack.jsonl 2>/dev/null; tail -c 400 $OUT/fp8_quack.log; }
echo "left $(left) s"
