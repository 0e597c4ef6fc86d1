#!/usr/bin/env bash
# The device check of the foundation issue, for a lent GPU machine (no network, torch preinstalled there):
#   tests on CUDA, then convnet T=5 on full Fashion-MNIST for 5 epochs (fp32 and bf16), then the engine bench.
# Data: the four F-MNIST IDX files in $SNNLTH_DATA. Results go to $OUT (or ./gpu_out).
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -m "not slow" -p no:cacheprovider tests 2>&1 | tail -5 | tee "$OUT/pytest.txt"
python3 -m snnlth train --device cuda --dataset fmnist --model convnet --timesteps 5 --epochs 5 \
  --out "$OUT/full_fp32" --no-progress 2>&1 | tee "$OUT/full_fp32.txt"
python3 -m snnlth train --device cuda --amp --dataset fmnist --model convnet --timesteps 5 --epochs 5 \
  --out "$OUT/full_bf16" --no-progress 2>&1 | tee "$OUT/full_bf16.txt"
for m in convnet vgg16 resnet19; do python3 bench/engine.py --device cuda --model $m --steps 10; done 2>&1 | tee "$OUT/bench.txt"
rm -f "$OUT"/full_*/checkpoint.pt
