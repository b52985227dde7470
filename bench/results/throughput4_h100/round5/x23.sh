#!/bin/bash
# Round 5, call 2 (carry .whl .gpu/x23.sh; call 1: x1.sh keeps the shards): install quack; 200-step loss equivalence on the course
# corpus: the default path on quack with the loss a chunk at a time (fast/loss.py) against the same with 02's head;
# then the test that "auto" picks the fused loss there.
set -u
T0=$(date +%s); left() { echo $(( ${LIMIT:-300} - ($(date +%s) - T0) )); }
mkdir -p /tmp/w && cp .whl/*.whl /tmp/w/ && cat /tmp/keep/cu13part_aa .whl/cu13part_ab > /tmp/w/nvidia_cutlass_dsl_libs_cu13-4.7.1-cp312-cp312-manylinux_2_28_x86_64.whl
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sp/site-packages /tmp/w/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/sp/site-packages:/tmp/sp/site-packages/nvidia_cutlass_dsl/dsl_packages
echo "installed after $(( $(date +%s) - T0 )) s"
T=$(date +%s); ( timeout $(( $(left) - 40 )) python3 bench/loss_equivalence.py --data-dir /tmp/keep/eqdata --steps 200 --paths quack-compiled quack+loss-compiled --out $OUT > $OUT/loss_equivalence.log 2>&1 ); echo "loss_equivalence rc=$? $(( $(date +%s) - T )) s"; tail -8 $OUT/loss_equivalence.log
[ $(left) -gt 20 ] && { T=$(date +%s); ( timeout $(( $(left) - 3 )) python3 -m pytest -q -rs -o addopts="" -p no:cacheprovider tests/test_loss_fused.py -k auto > $OUT/gpu_tests_loss.log 2>&1 ); echo "tests rc=$? $(( $(date +%s) - T )) s $(tail -c 200 $OUT/gpu_tests_loss.log)"; }
echo "left $(left) s"
