#!/usr/bin/env bash
# Device check of the report/export issue, for a lent GPU machine: report/export tests, then a CUDA search whose
# exported ticket is loaded back onto the GPU and must reproduce the run's accuracy; then a report over the runs.
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
timeout 120 python3 -m pytest -q -x -p no:cacheprovider tests/report tests/test_export.py tests/test_devices.py 2>&1 \
  | tail -2 | tee "$OUT/pytest.txt"
A="--device cuda --dataset fmnist --model convnet --timesteps 5 --epochs 3 --rounds 2 --seed 0 --no-progress"
python3 -m snnlth search $A --out "$OUT/imp" | tail -6
python3 -m snnlth search $A --method eb --target-sparsity 0.5 0.8 --eb-window 2 --eb-threshold 0.1 --early-time auto \
  --out "$OUT/eb" | tail -5
python3 -m snnlth export "$OUT/imp" --out "$OUT/t.safetensors"
python3 - "$OUT" <<'PY'
import json, sys, torch
from snnlth import load_ticket
from snnlth.config import DataConfig
from snnlth.data import load_data
from snnlth.engine.evaluate import evaluate
out = sys.argv[1]
t = load_ticket(f"{out}/t.safetensors", device="cuda")
t.model.input_transform = torch.nn.Identity()  # evaluate() feeds normalised images
acc = evaluate(t.model, load_data(DataConfig(), torch.device("cuda")), int(t.metadata["timesteps"]))
print("reloaded on cuda:", acc["accuracy"], "run:", t.metadata["test_accuracy"], "equal:",
      acc["accuracy"] == float(t.metadata["test_accuracy"]))
PY
python3 -m snnlth report "$OUT/imp" "$OUT/eb" --out "$OUT/report" 2>&1 | tail -4 | tee "$OUT/report.txt"
rm -rf "$OUT/imp" "$OUT/eb" "$OUT/t.safetensors"
