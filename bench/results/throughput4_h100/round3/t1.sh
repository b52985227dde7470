#!/bin/bash
# Throughput IV, third round, call 1: keep the first half of the cu13 wheel in /tmp/keep; the default step
# without quack (moe_grouped: the A of an A B B A).
set -u
mkdir -p /tmp/keep && cp .whlA/cu13part_aa /tmp/keep/
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/device.txt
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a $OUT/device.txt
date -u | tee -a $OUT/device.txt
STEP="bench/throughput.py --what step --micro-batch 32 --accum 16 --warmup 1 --steps 3"
T=$(date +%s); timeout 400 python3 $STEP --moe grouped --json $OUT/step_grouped_1.jsonl > $OUT/step_grouped_1.log 2>&1
echo "grouped rc=$? $(( $(date +%s) - T )) s $(tail -c 300 $OUT/step_grouped_1.log)"
