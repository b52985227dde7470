#!/bin/bash
# One start: 06's full HellaSwag (all three scorings) before (510e243, _before/) and after, ABBA.
set -u
T0=$(date +%s); left() { echo $(( 570 - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/device.txt
pip install -q --no-deps --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING
export PYTHONPATH=/tmp/site
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee -a $OUT/device.txt
date -u | tee -a $OUT/device.txt
HS="bench/hellaswag_speed.py --tokenizer /tmp/repo_tok.json --hellaswag embedded/hellaswag/hellaswag_val.jsonl.zst --nanogpt"
cp .gpu/tokenizer32k.json /tmp/repo_tok.json
hs() { ( cd $1 && timeout $(( $(left) - 5 )) python3 $HS > $OUT/$2.log 2>&1 ); echo "$2 rc=$? $(grep -o '"seconds": [0-9.]*, "wall_seconds": [0-9.]*' $OUT/$2.log) $(grep -o '"acc_norm": [0-9.]*' $OUT/$2.log)"; }
for i in 3 4 5; do
  [ $(left) -gt 80 ] && hs . hs_after_$i
  [ $(left) -gt 80 ] && hs _before hs_before_$i
done
echo "left $(left) s"
