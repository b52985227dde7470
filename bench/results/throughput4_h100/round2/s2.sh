#!/bin/bash
# Call 2: install quack; the GPU tests of fast/moe.py; the default step with quack ("auto" = fused) and its profile.
set -u
T0=$(date +%s); left() { echo $(( 570 - ($(date +%s) - T0) )); }
date -u | tee $OUT/device2.txt
mkdir -p /tmp/w && cp .whl/*.whl /tmp/w/ && cat /tmp/keep/cu13part_aa .whl/cu13part_ab > /tmp/w/nvidia_cutlass_dsl_libs_cu13-4.7.1-cp312-cp312-manylinux_2_28_x86_64.whl
sha256sum /tmp/w/*.whl > $OUT/wheels.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sp/site-packages /tmp/w/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
python3 -c "import quack, cutlass, torch; print('quack', quack.__version__, 'cutlass', cutlass.__version__, 'torch', torch.__version__)" 2>&1 | tail -3 | tee -a $OUT/device2.txt
T=$(date +%s); ( timeout 150 python3 -m pytest -q -rs tests/test_moe_fused.py -k "quack_equals_moe_grouped or auto_is_fused" > $OUT/gpu_tests.log 2>&1 ); echo "tests rc=$? $(( $(date +%s) - T )) s $(tail -c 300 $OUT/gpu_tests.log)"
STEP="bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --steps 3"
T=$(date +%s); ( timeout $(( $(left) - 5 )) python3 $STEP --json $OUT/step_auto_quack.jsonl > $OUT/step_auto_quack.log 2>&1 ); echo "auto with quack rc=$? $(( $(date +%s) - T )) s $(tail -c 300 $OUT/step_auto_quack.log)"
grep -c "lru_cache\|Graph break\|graph break" $OUT/step_auto_quack.log
[ $(left) -gt 400 ] && { T=$(date +%s); ( timeout $(( $(left) - 5 )) python3 $STEP --steps 1 --profile $OUT/profile_auto_quack.txt > $OUT/profile.log 2>&1 ); echo "profile rc=$? $(( $(date +%s) - T )) s $(head -c 700 $OUT/profile_auto_quack.txt)"; }
echo "left $(left) s"
