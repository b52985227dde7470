#!/bin/bash
# Round 4, call 1: keep the first half of the cu13 wheel.
mkdir -p /tmp/keep && cp .whlA/cu13part_aa /tmp/keep/ && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/device.txt
