#!/usr/bin/env bash
# The device check of the Speed issue, for a lent GPU machine (no network, torch preinstalled there; spikingjelly's
# neurons need only torch and loguru, so its package is carried in .gpudata/spikingjelly; F-MNIST in .gpudata).
# Order (shortest and most wanted first, each step under its own timeout so a slow one cannot eat the rest):
#   the LIF-vs-spikingjelly and fast-path tests on CUDA, bench/gpu_epoch.py (VGG16 and ResNet19, T=5 and 3),
#   the CUDA rows of bench/engine.py. Results go to $OUT (or ./gpu_out).
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=src:.gpudata PYTHONUNBUFFERED=1 SNNLTH_DATA=${SNNLTH_DATA:-.gpudata}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/snn tests/engine/test_fastpath.py 2>&1 | tail -5 | tee "$OUT/pytest.txt"
timeout 300 python3 bench/gpu_epoch.py --batches 60 --out "$OUT/gpu_epoch.json" 2>&1 | tee "$OUT/gpu_epoch.txt"
timeout 150 python3 bench/engine.py --device cuda --quick --out "$OUT/twin_cuda.json" 2>&1 | tee "$OUT/twin_cuda.txt"
