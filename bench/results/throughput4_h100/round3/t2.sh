#!/bin/bash
# Call 2: install quack; the GPU tests; the loss head and RMSNorm levers (bench/ce_kernels.py); 06's full HellaSwag
# with moe_grouped (auto) and with the fused path.
set -u
T0=$(date +%s); left() { echo $(( 570 - ($(date +%s) - T0) )); }
date -u | tee $OUT/device2.txt
mkdir -p /tmp/w && cp .whl/*.whl /tmp/w/ && cat /tmp/keep/cu13part_aa .whl/cu13part_ab > /tmp/w/nvidia_cutlass_dsl_libs_cu13-4.7.1-cp312-cp312-manylinux_2_28_x86_64.whl
sha256sum /tmp/w/*.whl > $OUT/wheels.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sp/site-packages /tmp/w/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
python3 -c "import quack, cutlass, torch; print('quack', quack.__version__, 'cutlass', cutlass.__version__, 'torch', torch.__version__)" 2>&1 | tail -3 | tee -a $OUT/device2.txt
T=$(date +%s); ( timeout 200 python3 -m pytest -q -rs -o addopts="" -p no:cacheprovider tests/test_moe_fused.py > $OUT/gpu_tests.log 2>&1 ); echo "tests rc=$? $(( $(date +%s) - T )) s $(tail -c 400 $OUT/gpu_tests.log)"
T=$(date +%s); ( timeout 150 python3 bench/ce_kernels.py --json $OUT/ce_kernels.jsonl > $OUT/ce_kernels.log 2>&1 ); echo "ce rc=$? $(( $(date +%s) - T )) s"; tail -5 $OUT/ce_kernels.log
T=$(date +%s); ( timeout 100 python3 bench/ce_kernels.py --norm --json $OUT/ce_kernels.jsonl > $OUT/norm_kernels.log 2>&1 ); echo "norm rc=$? $(( $(date +%s) - T )) s"; tail -3 $OUT/norm_kernels.log
HS="bench/hellaswag_speed.py --tokenizer .gpu/tokenizer32k.json --hellaswag .gpu/hellaswag_val.jsonl --nanogpt"
hs() { T=$(date +%s); ( timeout $(( $(left) - 5 )) python3 $HS --moe $1 > $OUT/hs_$2.log 2>&1 ); echo "hs $2 rc=$? $(( $(date +%s) - T )) s $(grep -o '"seconds": [0-9.]*, "wall_seconds": [0-9.]*' $OUT/hs_$2.log) $(grep -o '"acc_norm": [0-9.]*' $OUT/hs_$2.log)"; }
[ $(left) -gt 60 ] && hs auto auto_1
[ $(left) -gt 60 ] && hs fused fused_1
[ $(left) -gt 60 ] && hs fused fused_2
[ $(left) -gt 60 ] && hs auto auto_2
echo "left $(left) s"
