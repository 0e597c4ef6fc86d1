"""Training-step throughput of a model, two variants measured side by side (interleaved) in one run:
fused vs reference LIF (``--compare lif``), or per-step vs pooled BatchNorm over time (``--compare bn``).

    .venv/bin/python bench/engine.py [--compare lif|bn] [--model convnet] [--timesteps 5] [--batch-size 128]
                                     [--steps 5] [--device auto]
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


def images_per_second(args: argparse.Namespace, device: torch.device, bn_time: str = "per-step") -> float:
    torch.manual_seed(0)
    c, s = SHAPES[args.model]
    model = create_model(ModelConfig(model=args.model, bn_time=bn_time), c, s, 10).to(device)
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


def compare_lif(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    fused_fn = neuron.lif_multistep
    results: dict[str, list[float]] = {}
    try:
        for label in ("fused", "reference", "fused", "reference"):  # interleaved to even out machine noise
            reference = lambda x, *a, **k: neuron.lif_reference(x, *a, **k)[0]  # noqa: E731
            neuron.lif_multistep = fused_fn if label == "fused" else reference
            results.setdefault(label, []).append(images_per_second(args, device))
    finally:
        neuron.lif_multistep = fused_fn
    return {k: max(v) for k, v in results.items()}


def compare_bn(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    results: dict[str, list[float]] = {}
    for mode in ("per-step", "pooled", "per-step", "pooled"):
        results.setdefault(mode, []).append(images_per_second(args, device, mode))
    return {k: max(v) for k, v in results.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compare", default="lif", choices=("lif", "bn"))
    p.add_argument("--model", default="convnet", choices=sorted(SHAPES))
    p.add_argument("--timesteps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    res = compare_lif(args, device) if args.compare == "lif" else compare_bn(args, device)
    (a, ra), (b, rb) = res.items()
    print(f"{args.model} T={args.timesteps} B={args.batch_size} on {device} ({torch.get_num_threads()} threads): "
          f"{a} {ra:.0f} img/s, {b} {rb:.0f} img/s, ratio {ra / rb:.2f}x")


if __name__ == "__main__":
    main()
