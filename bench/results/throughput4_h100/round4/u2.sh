#!/bin/bash
# Ran on 2026-12-06 18:35 UTC (output: u2_output.txt). Call 2 of a start (call 1: u1.sh): install quack;
# fast/loss.py's GPU tests; the default step with --loss fused against --loss reference, in the order A B B A.
# Carry .whl (call 1: .whlA) and this folder; the wheels' two halves: see BENCHMARKS.md "Throughput IV, second round".
set -u
T0=$(date +%s); left() { echo $(( 470 - ($(date +%s) - T0) )); }
date -u | tee -a $OUT/device.txt
mkdir -p /tmp/w && cp .whl/*.whl /tmp/w/ && cat /tmp/keep/cu13part_aa .whl/cu13part_ab > /tmp/w/nvidia_cutlass_dsl_libs_cu13-4.7.1-cp312-cp312-manylinux_2_28_x86_64.whl
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sp/site-packages /tmp/w/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
python3 -c "import quack, cutlass, torch; print('quack', quack.__version__, 'cutlass', cutlass.__version__, 'torch', torch.__version__, torch.cuda.get_device_name())" 2>&1 | tail -1 | tee -a $OUT/device.txt
T=$(date +%s); ( timeout 90 python3 -m pytest -q -rs -o addopts="" -p no:cacheprovider tests/test_loss_fused.py > $OUT/gpu_tests_loss.log 2>&1 ); echo "tests rc=$? $(( $(date +%s) - T )) s $(tail -c 300 $OUT/gpu_tests_loss.log)"
STEP="bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --steps 3"
run() { T=$(date +%s); ( timeout $(( $(left) - 5 )) python3 $STEP $1 --json $OUT/step_$2.jsonl > $OUT/step_$2.log 2>&1 ); echo "$2 rc=$? $(( $(date +%s) - T )) s $(grep -o '"tokens_per_s": [0-9]*, "mfu_percent": [0-9.]*, "peak_memory_gb": [0-9.]*' $OUT/step_$2.log) $(tail -c 200 $OUT/step_$2.log | grep -i error)"; }
run "--loss fused" fusedloss_1
[ $(left) -gt 70 ] && run "--loss reference" plainloss_1
[ $(left) -gt 70 ] && run "--loss reference" plainloss_2
[ $(left) -gt 60 ] && run "--loss fused" fusedloss_2
echo "left $(left) s"
