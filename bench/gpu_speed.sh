#!/usr/bin/env bash
# The device check of the Speed issue, for a lent GPU machine (no network, torch preinstalled there; spikingjelly's
# neurons need only torch and loguru, so their packages are carried in .gpudata; F-MNIST in .gpudata too).
# Sized from the first H200 run (2026-11-28): a fresh worker process costs 10-30 s (CUDA start, synthetic data, the
# Triton LIF compile), so one gpu_epoch row (3 processes) needs ~80 s and one engine.py row (4 processes) ~100 s.
# Order: what that run did not get, then repeats of what it did. Each step has its own limit. Results go to $OUT.
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=src:.gpudata PYTHONUNBUFFERED=1 SNNLTH_DATA=${SNNLTH_DATA:-.gpudata}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
step() { local name=$1 limit=$2; shift 2; echo "== $name (limit ${limit}s)"; local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -i "triton not available" | tee "$OUT/$name.txt"; echo "== $name: $((SECONDS - t0)) s"; }
# like for like with the twin's multi-step mode (BatchNorm over T·B)
step twin_cuda_vgg16_pooled 130 python3 bench/engine.py --device cuda --quick --models vgg16 --bn-time pooled --out "$OUT/twin_cuda_vgg16_pooled.json"
step epoch_vgg16_t5 110 python3 bench/gpu_epoch.py --batches 30 --models vgg16 --timesteps 5 --no-compile --out "$OUT/epoch_vgg16_t5.json"
step epoch_vgg16_t5_compile 150 python3 bench/gpu_epoch.py --batches 30 --models vgg16 --timesteps 5 --out "$OUT/epoch_vgg16_t5_compile.json"
step twin_cuda_vgg16 220 python3 bench/engine.py --device cuda --quick --models vgg16 --out "$OUT/twin_cuda_vgg16.json"
