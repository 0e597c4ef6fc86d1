"""Training-step throughput of a model, fused vs reference LIF, measured side by side in one run.

    .venv/bin/python bench/engine.py [--model convnet] [--timesteps 5] [--batch-size 128] [--steps 5] [--device auto]
"""

from __future__ import annotations

import argparse
import time

import torch

import snnlth.snn.neuron as neuron
from snnlth.config import ModelConfig, TrainConfig
from snnlth.engine.evaluate import seq_loss
from snnlth.engine.optim import make_optimizer, resolve_device
from snnlth.models import create_model

SHAPES = {"convnet": (1, 28), "lenet300": (1, 28), "vgg16": (3, 32), "resnet19": (3, 32)}


def images_per_second(args: argparse.Namespace, device: torch.device) -> float:
    torch.manual_seed(0)
    c, s = SHAPES[args.model]
    model = create_model(ModelConfig(model=args.model), c, s, 10).to(device)
    opt = make_optimizer(model, TrainConfig())
    x = torch.randn(args.batch_size, c, s, s, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    for i in range(args.steps + 1):
        if i == 1:  # first step is warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = seq_loss(model(x, args.timesteps), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="convnet", choices=sorted(SHAPES))
    p.add_argument("--timesteps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    fused_fn = neuron.lif_multistep
    results = {}
    for label in ("fused", "reference", "fused", "reference"):  # interleaved to even out machine noise
        reference = lambda x, *a, **k: neuron.lif_reference(x, *a, **k)[0]  # noqa: E731
        neuron.lif_multistep = fused_fn if label == "fused" else reference
        results.setdefault(label, []).append(images_per_second(args, device))
    neuron.lif_multistep = fused_fn
    fused, ref = max(results["fused"]), max(results["reference"])
    print(f"{args.model} T={args.timesteps} B={args.batch_size} on {device} ({torch.get_num_threads()} threads): "
          f"fused LIF {fused:.0f} img/s, reference LIF {ref:.0f} img/s, ratio {fused / ref:.2f}x")


if __name__ == "__main__":
    main()
