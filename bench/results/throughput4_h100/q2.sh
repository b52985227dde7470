#!/bin/bash
# Call 2: assemble + install quack 0.6.5 / cutlass-dsl 4.7.1, the GPU tests of fast/moe.py, the fused step, the pair.
set -u
T0=$(date +%s); left() { echo $(( 330 - ($(date +%s) - T0) )); }
date -u | tee $OUT/device2.txt
mkdir -p /tmp/w && cp .whl/*.whl /tmp/w/ && cat /tmp/keep/cu13part_aa .whl/cu13part_ab > /tmp/w/nvidia_cutlass_dsl_libs_cu13-4.7.1-cp312-cp312-manylinux_2_28_x86_64.whl
sha256sum /tmp/w/*.whl | tee $OUT/wheels.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sp/site-packages /tmp/w/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
python3 -c "import quack, cutlass, torch; print('quack', quack.__version__, 'cutlass', cutlass.__version__, 'torch', torch.__version__)" 2>&1 | tail -3 | tee -a $OUT/device2.txt
( timeout 150 python3 -m pytest -q -x -rs tests/test_moe_fused.py > $OUT/gpu_tests.log 2>&1 ); echo "tests rc=$? $(tail -c 1500 $OUT/gpu_tests.log)"
STEP="bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --steps 3"
run_step() {  # $1 moe impl, $2 name
  ( timeout $(( $(left) - 5 )) python3 $STEP --moe $1 --json $OUT/$2.jsonl > $OUT/$2.log 2>&1 ); echo "$2 rc=$? $(tail -c 400 $OUT/$2.log)"
}
run_step fused step_fused_1
[ $(left) -gt 150 ] && run_step fused step_fused_2
echo "left $(left) s"
