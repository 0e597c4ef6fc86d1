#!/usr/bin/env bash
# Device check of the search issue, for a lent GPU machine: search tests with CUDA, then imp vs imp + Early-Time
# (auto) on convnet, full Fashion-MNIST, T=5, 4 rounds, same seed, side by side. F-MNIST IDX files in $SNNLTH_DATA.
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/methods/test_all_models.py tests/test_devices.py \
  tests/methods/test_imp.py 2>&1 | tail -3 | tee "$OUT/pytest.txt"
A="--device cuda --dataset fmnist --model convnet --timesteps 5 --epochs 5 --rounds 4 --seed 0 --no-progress"
python3 -m snnlth search $A --out "$OUT/imp" 2>&1 | grep -v "^round_\|^retrain_" | tee "$OUT/imp.txt"
python3 -m snnlth search $A --early-time auto --out "$OUT/imp_et" 2>&1 | grep -v "^round_\|^retrain_" | tee "$OUT/imp_et.txt"
for d in imp imp_et; do cp "$OUT/$d/summary.json" "$OUT/summary_$d.json"; rm -rf "$OUT/$d"; done
