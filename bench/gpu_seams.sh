#!/usr/bin/env bash
# Device check of the "faithful numbers and open seams" issue, for a lent GPU machine (torch preinstalled there):
#   1. the CUDA-parametrised tests (models, per-step BN, data sources, devices);
#   2. training step per-step vs pooled BatchNorm over time (convnet, vgg16, resnet19; T=5, B=128), side by side;
#   3. bench/bn_time.py on full Fashion-MNIST, 10 epochs, 2 seeds: does per-step BN's accuracy gap close?
#   4. a CUDA search, exported, reloaded on CUDA: the ticket on raw images in [0, 1] gives the run's accuracy.
# Data: the four F-MNIST IDX files in $SNNLTH_DATA. Results go to $OUT (or ./gpu_out).
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_devices.py tests/methods/test_all_models.py \
  tests/snn/test_layers.py tests/data/test_source.py 2>&1 | tail -3 | tee "$OUT/pytest.txt"
for m in convnet vgg16 resnet19; do timeout 60 python3 bench/engine.py --compare bn --device cuda --model $m --steps 10; done \
  2>&1 | tee "$OUT/bn_step.txt"
timeout 250 python3 bench/bn_time.py --device cuda --train-subset 60000 --epochs 10 --seeds 0 1 \
  --out "$OUT/bn_time_gpu.json" 2>&1 | tee "$OUT/bn_time_gpu.txt"
A="--device cuda --dataset fmnist --model convnet --timesteps 5 --epochs 2 --rounds 1 --seed 0 --no-progress"
timeout 90 python3 -m snnlth search $A --out /tmp/imp > /dev/null && python3 -m snnlth export /tmp/imp --out /tmp/t.st \
  > /dev/null && timeout 60 python3 - <<'PY' 2>&1 | tee "$OUT/ticket.txt"
import torch
import snnlth
from snnlth.config import DataConfig
from snnlth.data import load_data
ticket = snnlth.load_ticket("/tmp/t.st", device="cuda")
data = load_data(DataConfig(), torch.device("cuda"))
with torch.no_grad():
    pred = torch.cat([ticket.model(x.float() / 255).sum(0).argmax(-1) for x in data.test_x.split(1000)])
acc = 100.0 * int((pred == data.test_y).sum()) / len(data.test_y)
print("raw images on cuda:", acc, "run:", ticket.metadata["test_accuracy"], "equal:",
      acc == float(ticket.metadata["test_accuracy"]), "eval mode:", not ticket.model.training)
PY
