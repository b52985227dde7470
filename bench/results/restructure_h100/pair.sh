#!/bin/bash
# One start of the GPU machine: the default step before (510e243, _before/) and after (this tree), same start,
# then 06's full HellaSwag after, then the GPU-only tests; ABBA repeat if time is left.
set -u
T0=$(date +%s); left() { echo $(( 585 - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/device.txt
pip install -q --no-deps --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee -a $OUT/device.txt
date -u | tee -a $OUT/device.txt
STEP="bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --steps 3"
run_step() {  # $1 tree, $2 name
  ( cd $1 && timeout $(( $(left) - 5 )) python3 $STEP --json $OUT/$2.jsonl > $OUT/$2.log 2>&1 ); echo "$2 rc=$? $(tail -c 300 $OUT/$2.log)"
}
run_step _before step_before_1
run_step . step_after_1
HS="bench/hellaswag_speed.py --tokenizer .gpu/tokenizer32k.json --hellaswag embedded/hellaswag/hellaswag_val.jsonl.zst --nanogpt"
( timeout $(( $(left) - 5 )) python3 $HS > $OUT/hellaswag_after.log 2>&1 ); echo "hs rc=$? $(tail -c 600 $OUT/hellaswag_after.log)"
( timeout $(( $(left) - 5 )) python3 -m pytest -q -x tests/test_rope_kernel.py tests/test_fp8.py -k "not test_05_tiny and not test_06_scores" > $OUT/gpu_tests.log 2>&1 ); echo "tests rc=$? $(tail -3 $OUT/gpu_tests.log)"
[ $(left) -gt 200 ] && run_step . step_after_2
[ $(left) -gt 110 ] && run_step _before step_before_2
echo "left $(left) s"
