#!/bin/bash
# Call 2: assemble + install quack 0.6.5 / cutlass-dsl 4.7.1; the GPU tests of fast/moe.py; the fused step.
set -u
T0=$(date +%s); left() { echo $(( 560 - ($(date +%s) - T0) )); }
date -u | tee $OUT/device2.txt
mkdir -p /tmp/w && cp .whl/*.whl /tmp/w/ && cat /tmp/keep/cu13part_aa .whl/cu13part_ab > /tmp/w/nvidia_cutlass_dsl_libs_cu13-4.7.1-cp312-cp312-manylinux_2_28_x86_64.whl
sha256sum /tmp/w/*.whl | tee $OUT/wheels.txt | cut -c1-16
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sp/site-packages /tmp/w/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
python3 -c "import quack, cutlass, torch; print('quack', quack.__version__, 'cutlass', cutlass.__version__, 'torch', torch.__version__)" 2>&1 | tail -3 | tee -a $OUT/device2.txt
T=$(date +%s); ( timeout 240 python3 -m pytest -q -rs tests/test_moe_fused.py > $OUT/gpu_tests.log 2>&1 ); echo "tests rc=$? $(( $(date +%s) - T )) s $(tail -c 1200 $OUT/gpu_tests.log)"
if grep -q "FAILED.*k_gathered" $OUT/gpu_tests.log; then
  echo "K-gathered weight grad failed: the step runs with the plain weight grad"; touch /tmp/keep/plain_wgrad
fi
[ -f /tmp/keep/plain_wgrad ] && sed -i 's/weight_grad=weight_grad_quack)/weight_grad=weight_grad_plain)/' fast/moe.py
STEP="bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --steps 3"
T=$(date +%s); ( timeout $(( $(left) - 5 )) python3 $STEP --moe fused --json $OUT/step_fused_1.jsonl > $OUT/step_fused_1.log 2>&1 ); echo "fused_1 rc=$? $(( $(date +%s) - T )) s $(tail -c 400 $OUT/step_fused_1.log)"
echo "left $(left) s"
