#!/usr/bin/env bash
# The device check of the Speed issue, for a lent GPU machine (no network, torch preinstalled there; spikingjelly's
# neurons need only torch and loguru, so their packages are carried in .gpudata; F-MNIST in .gpudata too).
# Order: correctness of the fused kernels and the CUDA-graph step on this GPU (+ a profile), the CIFAR-10 epoch
# (bench/gpu_epoch.py, variants in one process), then the CUDA rows of bench/engine.py (fresh processes).
# Each step has its own limit; results go to $OUT. About 8 minutes on an H200.
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=src:.gpudata PYTHONUNBUFFERED=1 SNNLTH_DATA=${SNNLTH_DATA:-.gpudata}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
step() { local name=$1 limit=$2; shift 2; echo "== $name (limit ${limit}s)"; local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -i "triton not available" | tee "$OUT/$name.txt" | cut -c1-600
  echo "== $name: $((SECONDS - t0)) s"; }
step probe_check 110 python3 bench/gpu_probe.py --part check --out "$OUT/probe_check.json"
step epoch 190 python3 bench/gpu_epoch.py --batches 100 --out "$OUT/epoch.json"
step twin_cuda_vgg16 115 python3 bench/engine.py --device cuda --quick --models vgg16 --out "$OUT/twin_cuda_vgg16.json"
step twin_cuda_resnet19 115 python3 bench/engine.py --device cuda --quick --models resnet19 --out "$OUT/twin_cuda_resnet19.json"
