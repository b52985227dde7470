#!/bin/bash
set -u
T0=$(date +%s); left() { echo $(( 400 - ($(date +%s) - T0) )); }
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
HS="bench/hellaswag_speed.py --tokenizer .gpu/tokenizer32k.json --hellaswag .gpu/hellaswag_val.jsonl --nanogpt"
hs() { T=$(date +%s); ( timeout $(( $(left) - 5 )) python3 $HS --moe $1 > $OUT/hs_$2.log 2>&1 ); echo "hs $2 rc=$? $(( $(date +%s) - T )) s $(grep -o '"seconds": [0-9.]*, "wall_seconds": [0-9.]*' $OUT/hs_$2.log) $(grep -o '"acc_norm": [0-9.]*' $OUT/hs_$2.log)"; }
[ $(left) -gt 60 ] && hs auto auto_1
[ $(left) -gt 60 ] && hs fused fused_1
[ $(left) -gt 60 ] && hs fused fused_2
[ $(left) -gt 60 ] && hs auto auto_2
echo "left $(left) s"
