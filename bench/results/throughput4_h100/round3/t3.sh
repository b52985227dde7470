#!/bin/bash
# Call 3: the default step with quack ("auto" = fused), then grouped, then fused again (B B A after call 1's A);
# the FP8 step (moe_impl grouped_fp8) if time is left.
set -u
T0=$(date +%s); left() { echo $(( 580 - ($(date +%s) - T0) )); }
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
date -u | tee $OUT/device3.txt
STEP="bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --steps 3"
run() { T=$(date +%s); ( timeout $(( $(left) - 5 )) python3 $STEP --moe $1 --json $OUT/step_$2.jsonl > $OUT/step_$2.log 2>&1 ); echo "$2 rc=$? $(( $(date +%s) - T )) s $(tail -c 250 $OUT/step_$2.log)"; }
run auto auto_1
[ $(left) -gt 130 ] && run grouped grouped_2
[ $(left) -gt 130 ] && run auto auto_2
[ $(left) -gt 130 ] && run grouped_fp8 fp8_1
echo "left $(left) s"
