#!/bin/bash
# Round 5, call 1 (carry .whlA .eqdata .gpu/x1.sh): keep the first half of the cu13 wheel and the course-corpus shards.
mkdir -p /tmp/keep && cp .whlA/cu13part_aa /tmp/keep/ && cp -r .eqdata /tmp/keep/eqdata && date -u | tee $OUT/device.txt && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a $OUT/device.txt && ls /tmp/keep/eqdata | wc -l
