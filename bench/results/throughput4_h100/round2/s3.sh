#!/bin/bash
# Call 3: 200-step loss equivalence on the course corpus (32k tokenizer): quack's experts against grouped_mm, next
# to the bf16 noise yardstick (plain eager vs plain compiled).
set -u
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
date -u
T=$(date +%s); ( timeout 560 python3 bench/loss_equivalence.py --data-dir .eqdata --steps 200 --paths fast-eager fast-compiled fused-compiled quack-compiled --out $OUT > $OUT/loss_equivalence.log 2>&1 ); echo "rc=$? $(( $(date +%s) - T )) s"; tail -20 $OUT/loss_equivalence.log
