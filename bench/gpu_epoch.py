"""Seconds per CIFAR-10 training epoch (50,000 images, 32×32, B=128) of VGG16 and ResNet19 at T=5 and T=3: our engine
(its fast settings: compiled and fused LIF kernels, the CUDA-graph step) against the spikingjelly twin
(bench/twin.py, the faster of its single- and multi-step modes), both under bf16 autocast on CUDA (``--no-amp``: fp32).

Ours trains through the engine's own epoch (snnlth.engine.loop.train_epoch: device-resident uint8 images, per-epoch
random draws, on-device crop/flip/Cutout) from the real CIFAR-10 when ``--data-dir`` (or ``$SNNLTH_DATA``) holds it,
else from synthetic images of the same shape; the twin gets the same batches in a plain loop. Each variant: an untimed
warm-up slice of 5 batches (compiles, captures), then one whole timed epoch (``--batches N``: N batches scaled to an
epoch). Variants run one after another in this process (``--fresh``: each in its own). The GPU's name is printed.

    python bench/gpu_epoch.py [--out FILE.json] [--models vgg16] [--timesteps 5] [--ours ours-cl] [--no-amp]
    python bench/gpu_epoch.py --device cpu --batches 2 --models vgg16 --timesteps 3   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

EPOCH_IMAGES, BATCH = 50_000, 128
OURS = ("ours", "ours-cl")  # ours-cl: channels-last memory format; our figure is the faster
TWINS = ("twin-s", "twin-m")


def _data(device: torch.device, data_dir: str | None):
    """CIFAR-10 as the engine holds it, or synthetic images of the same shape and a flag saying which."""
    from snnlth.config import DataConfig
    from snnlth.data.catalog import DATASETS
    from snnlth.data.loader import DataBundle, load_data
    from snnlth.errors import DataError

    try:
        return load_data(DataConfig(dataset="cifar10"), device, data_dir=data_dir), "CIFAR-10"
    except (DataError, FileNotFoundError, OSError):
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (EPOCH_IMAGES, 3, 32, 32), dtype=torch.uint8, generator=gen)
        y = torch.randint(0, 10, (EPOCH_IMAGES,), generator=gen)
        bundle = DataBundle(DATASETS.get("cifar10"), x.to(device), y.to(device), x[:1000].to(device),
                            y[:1000].to(device), image_size=32, augment=True)
        return bundle, "synthetic (CIFAR-10 not found)"


class _Slice:
    """The first ``batches`` batches of each epoch of ``data`` (a warm-up slice), as the engine's loop reads data."""

    def __init__(self, data, batches: int) -> None:
        self.data, self.batches, self.device = data, batches, data.device
        self.num_train = min(batches * BATCH, data.num_train)

    def train_batches(self, *args):
        import itertools

        return itertools.islice(self.data.train_batches(*args), self.batches)


def worker(args: argparse.Namespace) -> dict:
    """One variant: ``{"epoch_s", "warmup_s", "data", "settings"}``. Ours trains through the engine's own epoch
    (snnlth.engine.loop.train_epoch, with the CUDA-graph step where it applies); the twin through a plain loop over
    the same batches."""
    from snnlth.config import ModelConfig, RuntimeConfig, TrainConfig
    from snnlth.engine.evaluate import autocast, seq_loss
    from snnlth.engine.fastpath import prepare
    from snnlth.engine.graphed import GraphedStep, graph_blocker
    from snnlth.engine.loop import EpochSpec, FitSettings, Stepper, train_epoch
    from snnlth.engine.optim import make_optimizer, resolve_device
    from snnlth.models import create_model

    device = resolve_device(args.device)
    data, kind = _data(device, args.data_dir)
    torch.manual_seed(0)
    ours = create_model(ModelConfig(model=args.model), 3, 32, 10).to(device)
    fast = args.worker in OURS and device.type == "cuda"
    # both sides train under the same bf16 autocast on CUDA (same precision, --no-amp: fp32 on both); compile,
    # channels-last, the CUDA graph and the fused kernels are our engine's own
    cfg = TrainConfig(batch_size=BATCH, amp=device.type == "cuda" and args.amp)
    runtime = RuntimeConfig(compile=fast and args.compile, channels_last=fast and args.worker == "ours-cl",
                            lif_kernel="auto", cuda_graph=fast)
    if args.worker in OURS:
        model = ours
        forward = prepare(model, runtime, device)
        graphed = GraphedStep(model, forward, cfg.amp) if runtime.cuda_graph and not graph_blocker(
            model, device, False) else None
    else:
        from twin import make_twin

        model = forward = make_twin(ours, args.worker[-1]).to(device)
        graphed = None
    opt = make_optimizer(model, cfg)
    model.train()

    def run(source, epoch: int) -> None:
        if args.worker in OURS:
            train_epoch(model, opt, source, Stepper(FitSettings(cfg, runtime), forward, graphed),
                        EpochSpec(epoch, 2, args.timesteps))
            return
        for x, y in source.train_batches(BATCH, 0, 0, epoch):
            if len(y) < 2:
                break
            with autocast(device, cfg.amp):
                logits = forward(x, args.timesteps)
            loss = seq_loss(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def timed(source, epoch: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(source, epoch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    warmup = timed(_Slice(data, 5), 0)
    if args.batches:
        epoch_s = timed(_Slice(data, args.batches), 1) / args.batches * (EPOCH_IMAGES / BATCH)
    else:
        epoch_s = timed(data, 1)  # a whole epoch
    row = {"epoch_s": epoch_s, "warmup_s": warmup, "data": kind,
           "settings": {"amp": cfg.amp, "compile": cfg.compile, "channels_last": cfg.channels_last,
                        "cuda_graph": graphed is not None and graphed.failed is None}}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", metavar="FILE.json")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir")
    p.add_argument("--batches", type=int, default=0, help="timed batches per variant, scaled to an epoch (default "
                   "0: a whole epoch)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on both sides (default: bf16 autocast)")
    p.add_argument("--ours", default="ours,ours-cl", help="which of our variants to run (ours-cl: channels-last)")
    p.add_argument("--fresh", action="store_true", help="each variant in a fresh process (default: one process)")
    p.add_argument("--twins", default="twin-s,twin-m", help="which twin modes to run (the faster one counts)")
    p.add_argument("--models", nargs="+", default=["vgg16", "resnet19"], choices=["vgg16", "resnet19"])
    p.add_argument("--timesteps", nargs="+", type=int, default=[5, 3])
    p.add_argument("--compile", action="store_true", help="ours with torch.compile of the whole model")
    p.add_argument("--worker", choices=(*OURS, *TWINS), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.timesteps = args.timesteps[0]
        print(json.dumps(worker(args)))
        return None
    from snnlth.engine.optim import resolve_device

    device = resolve_device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (no GPU)"
    print(f"device: {gpu}; torch {torch.__version__}", flush=True)
    rows = []
    for model in args.models:
        for t in args.timesteps:
            got = {}
            for variant in (*args.ours.split(","), *args.twins.split(",")):
                if not args.fresh:
                    sub = argparse.Namespace(**{**vars(args), "worker": variant, "model": model, "timesteps": t,
                                                "device": device.type})
                    try:
                        got[variant] = worker(sub)
                    except Exception as exc:  # noqa: BLE001 - one failed variant must not cost the others
                        print(f"{model} T={t} {variant}: failed: {type(exc).__name__}: {exc}", flush=True)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                cmd = [sys.executable, __file__, "--worker", variant, "--model", model, "--timesteps", str(t),
                       "--batches", str(args.batches), "--device", device.type]
                cmd += ["--data-dir", args.data_dir] if args.data_dir else []
                cmd += ["--compile"] if args.compile else []
                cmd += [] if args.amp else ["--no-amp"]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{model} T={t} {variant}: failed\n{done.stderr[-2000:]}", flush=True)
                    continue
                got[variant] = json.loads(done.stdout.splitlines()[-1])
            if not any(v in got for v in OURS) or not any(v in got for v in TWINS):
                continue
            twin_variant = min((v for v in TWINS if v in got), key=lambda v: got[v]["epoch_s"])
            ours_variant = min((v for v in OURS if v in got), key=lambda v: got[v]["epoch_s"])
            ours, twin = got[ours_variant], got[twin_variant]
            rows.append({"device": gpu, "model": model, "timesteps": t, "batch": BATCH, "data": ours["data"],
                         "ours_epoch_s": ours["epoch_s"], "twin_epoch_s": twin["epoch_s"],
                         "speedup": twin["epoch_s"] / ours["epoch_s"], "twin_mode": twin_variant,
                         "ours_variant": ours_variant,
                         "ours_warmup_s": ours["warmup_s"], "ours_settings": ours["settings"]})
            r = rows[-1]
            r["epoch_s_by_variant"] = {v: got[v]["epoch_s"] for v in got}
            print(f"{gpu} {model} T={t} B={BATCH} ({r['data']}): ours {r['ours_epoch_s']:.2f} s/epoch, twin "
                  f"{r['twin_epoch_s']:.2f} s/epoch ({twin_variant}), speed-up {r['speedup']:.2f}x "
                  f"(ours' warm-up incl. compile {r['ours_warmup_s']:.0f} s; {r['ours_settings']}; all: "
                  f"{ {v: round(e, 2) for v, e in r['epoch_s_by_variant'].items()} })", flush=True)
            if args.out:  # after every row: a run cut short keeps what it measured
                Path(args.out).write_text(json.dumps({"device": gpu, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
