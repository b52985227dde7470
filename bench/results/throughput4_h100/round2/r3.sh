#!/bin/bash
# Call 3: the profile of the fused step, then the pair again (grouped, fused) on this start.
set -u
T0=$(date +%s); left() { echo $(( 570 - ($(date +%s) - T0) )); }
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
[ -f /tmp/keep/plain_wgrad ] && sed -i 's/weight_grad=weight_grad_quack)/weight_grad=weight_grad_plain)/' fast/moe.py && echo "plain weight grad"
STEP="bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --steps 3"
T=$(date +%s); ( timeout 240 python3 bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --moe fused --profile $OUT/profile_fused.txt > $OUT/profile_fused.log 2>&1 ); echo "profile rc=$? $(( $(date +%s) - T )) s $(head -c 1500 $OUT/profile_fused.txt)"
run_step() { T=$(date +%s); ( timeout $(( $(left) - 5 )) python3 $STEP --moe $1 --json $OUT/$2.jsonl > $OUT/$2.log 2>&1 ); echo "$2 rc=$? $(( $(date +%s) - T )) s $(tail -c 300 $OUT/$2.log)"; }
[ $(left) -gt 150 ] && run_step fused step_fused_2
[ $(left) -gt 150 ] && run_step grouped step_grouped_2
echo "left $(left) s"
