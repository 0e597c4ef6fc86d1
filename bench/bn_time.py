"""BatchNorm over time, per-step (the paper's code) vs pooled over T·B, measured side by side in one run.

For each seed and mode (interleaved): convnet on a stratified F-MNIST subset, T=5, a few epochs; the Early-Time KL
curve and T_early after the warm-up epochs; training images/s; final test accuracy. Then a short run on a small subset
whose first-epoch test accuracy shows how fast each mode's running statistics catch up, with the accuracy the same
network reaches when its running statistics are recomputed exactly (the diagnosis of a chance-level first epoch).

    .venv/bin/python bench/bn_time.py [--train-subset 10000] [--epochs 3] [--seeds 0 1] [--short-subset 1500]
                                      [--device auto] [--out bn_time.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from torch import nn

from snnlth.config import DataConfig, ModelConfig, TrainConfig
from snnlth.data import eval_batches, load_data
from snnlth.engine.evaluate import evaluate
from snnlth.engine.loop import FitSettings, Schedule, fit
from snnlth.engine.optim import make_optimizer, resolve_device
from snnlth.methods.early_time import choose_t_early, fixed_batch, measure_kl
from snnlth.models import create_model

MODES = ("per-step", "pooled")


def build(data, mode: str, seed: int, device: torch.device) -> nn.Module:
    torch.manual_seed(seed)
    spec = data.spec
    cfg = ModelConfig(model="convnet", timesteps=5, bn_time=mode)
    return create_model(cfg, spec.in_channels, data.image_size, spec.num_classes).to(device)


def long_run(data, mode: str, seed: int, args, device: torch.device) -> dict:
    """Warm-up epochs, the KL test (as Early-Time does it), the remaining epochs."""
    model = build(data, mode, seed, device)
    tc = TrainConfig(epochs=args.epochs, lr=args.lr, seed=seed)
    opt = make_optimizer(model, tc)
    state = fit(model, opt, data, FitSettings(tc), Schedule(args.epochs, 5, stop_epoch=args.warmup))
    kl = measure_kl(model, fixed_batch(data, 1000, seed), 5)
    t_early, norm = choose_t_early(kl, 0.6)
    state = fit(model, opt, data, FitSettings(tc), Schedule(args.epochs, 5), state)
    rows = state.history
    return {"test_accuracy": rows[-1]["test_accuracy"], "per_epoch_test_accuracy": [r["test_accuracy"] for r in rows],
            "train_accuracy": rows[-1]["train_accuracy"], "kl": kl, "kl_normalized": norm, "t_early": t_early,
            "images_per_second": sum(r["images_per_second"] for r in rows) / len(rows)}


@torch.no_grad()
def recalibrated_accuracy(model: nn.Module, data) -> float:
    """Test accuracy after recomputing every BN layer's running statistics exactly (cumulative average over the
    training images in train mode): what the network knows once its statistics have caught up."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for x, _ in eval_batches(data, 128, "train"):
        model(x, 5)
    return evaluate(model, data, 5)["accuracy"]


def short_run(data, mode: str, seed: int, args, device: torch.device) -> dict:
    model = build(data, mode, seed, device)
    tc = TrainConfig(epochs=args.epochs, lr=args.lr, seed=seed)
    schedule = Schedule(args.epochs, 5, stop_epoch=1)
    row = fit(model, make_optimizer(model, tc), data, FitSettings(tc), schedule).history[0]
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)][-1]  # one that sees sequences
    return {"train_accuracy": row["train_accuracy"], "test_accuracy": row["test_accuracy"],
            "recalibrated_test_accuracy": recalibrated_accuracy(model, data),
            "running_updates": int(bn.num_batches_tracked)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--short-subset", type=int, default=1500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device = resolve_device(args.device)
    start = time.perf_counter()
    results: dict = {"device": str(device), "threads": torch.get_num_threads(), "args": vars(args), "long": {},
                     "short": {}}
    for seed in args.seeds:
        data = load_data(DataConfig(train_subset=args.train_subset), device, seed=seed)
        for mode in MODES:
            r = results["long"].setdefault(mode, {})[seed] = long_run(data, mode, seed, args, device)
            norm = ", ".join(f"{t}: {v:.3f}" for t, v in r["kl_normalized"].items())
            print(f"{mode:>8} seed {seed}: test {r['test_accuracy']:.2f} % (per epoch "
                  f"{', '.join(f'{a:.2f}' for a in r['per_epoch_test_accuracy'])}), T_early {r['t_early']} "
                  f"(normalised KL {norm}), {r['images_per_second']:.0f} img/s", flush=True)
    for seed in args.seeds:
        data = load_data(DataConfig(train_subset=args.short_subset), device, seed=seed)
        for mode in MODES:
            r = results["short"].setdefault(mode, {})[seed] = short_run(data, mode, seed, args, device)
            print(f"{mode:>8} seed {seed}, {args.short_subset} images, epoch 1: train {r['train_accuracy']:.2f} %, "
                  f"test {r['test_accuracy']:.2f} %, test with recomputed BN statistics "
                  f"{r['recalibrated_test_accuracy']:.2f} % ({r['running_updates']} running-statistics updates)",
                  flush=True)
    for mode in MODES:
        accs = [r["test_accuracy"] for r in results["long"][mode].values()]
        speed = [r["images_per_second"] for r in results["long"][mode].values()]
        print(f"{mode:>8}: mean test accuracy {sum(accs) / len(accs):.2f} %, mean {sum(speed) / len(speed):.0f} img/s")
    ratio = (sum(r["images_per_second"] for r in results["long"]["per-step"].values())
             / sum(r["images_per_second"] for r in results["long"]["pooled"].values()))
    print(f"per-step / pooled training speed: {ratio:.2f}x; {time.perf_counter() - start:.0f} s on {device}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
