"""Writers of tiny dataset files in the real on-disk formats, for tests."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from torch import nn


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_idx(path: Path, arr: np.ndarray) -> None:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def class_images(labels: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Images whose bright block position encodes the class (learnable in a few steps), plus noise."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 60, size=(len(labels), *shape), dtype=np.int64)
    side = shape[-1]
    for i, c in enumerate(labels):
        r, q = divmod(int(c) % 16, 4)
        cell = side // 4
        imgs[i, ..., r * cell:(r + 1) * cell, q * cell:(q + 1) * cell] += 180
    return np.clip(imgs, 0, 255).astype(np.uint8)


def make_fmnist(root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", class_images(labels, (28, 28), seed + n))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return root


def write_cifar_batch(path: Path, labels: np.ndarray, label_key: str, seed: int) -> None:
    data = class_images(labels, (3, 32, 32), seed).reshape(len(labels), -1)
    with path.open("wb") as fh:
        pickle.dump({b"batch_label": b"x", b"data": data, label_key.encode(): labels.tolist()}, fh)


def make_cifar10(root: Path, per_batch: int = 20, n_test: int = 20) -> Path:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_cifar_batch(base / f"data_batch_{i}", np.arange(per_batch) % 10, "labels", i)
    write_cifar_batch(base / "test_batch", np.arange(n_test) % 10, "labels", 9)
    return root


def make_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    base = root / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    write_cifar_batch(base / "train", np.arange(n_train) % 100, "fine_labels", 1)
    write_cifar_batch(base / "test", np.arange(n_test) % 100, "fine_labels", 2)
    return root


def search_cfg(data_dir, **search):
    """A tiny search config: lenet300 (fast on CPU), T=3, 3 epochs, batch 50 on the 200-image fake F-MNIST."""
    from snnlth.config import DataConfig, ModelConfig, RuntimeConfig, SearchConfig, SearchRunConfig, TrainConfig

    model = search.pop("model", "lenet300")
    timesteps = search.pop("timesteps", 3)
    epochs = search.pop("epochs", 3)
    return SearchRunConfig(data=DataConfig(), model=ModelConfig(model=model, timesteps=timesteps),
                           train=TrainConfig(epochs=epochs, batch_size=50, lr=0.05),
                           search=SearchConfig(**{"rounds": 2, **search}),
                           runtime=RuntimeConfig(data_dir=str(data_dir), device="cpu"))


def one_line_error(capsys) -> str:
    """The single ``snnlth: error:`` line a failed CLI call printed on stderr (and no traceback)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("snnlth: error: ") and "Traceback" not in err[0]
    return err[0]


def search_kit(cfg, path):
    """A MethodKit over a run store at ``path`` and the config's data, on the CPU (what ``snnlth.search`` builds),
    for tests that drive phases or reproduce a search step by hand."""
    import dataclasses

    import torch

    from snnlth.api import model_builder
    from snnlth.data import load_data
    from snnlth.methods.kit import MethodKit
    from snnlth.methods.phases import PhaseTrainer, RunParts
    from snnlth.rundir.store import RunStore

    cpu = torch.device("cpu")
    data = load_data(cfg.data, cpu, seed=cfg.train.seed, data_dir=cfg.runtime.data_dir)
    twin = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, neuron="relu"))
    trainer = PhaseTrainer(RunStore(path), RunParts(cfg.train, cfg.runtime, data, cpu))
    return MethodKit(cfg, trainer, model_builder(cfg, data), model_builder(twin, data))


def make_svhn(root: Path, n_train: int = 60, n_test: int = 30) -> Path:
    """SVHN format-2 files: X 32×32×3×N uint8, y N×1 with labels 1..10 (10 = digit 0)."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train_32x32.mat", n_train, 1), ("test_32x32.mat", n_test, 2)):
        labels = np.arange(n) % 10
        x = class_images(labels, (3, 32, 32), seed).transpose(2, 3, 1, 0)  # -> 32, 32, 3, N
        savemat(root / name, {"X": np.ascontiguousarray(x), "y": np.where(labels == 0, 10, labels)[:, None]})
    return root


def make_tinyimagenet(root: Path, classes: int = 4, per_class: int = 6, n_val: int = 8) -> Path:
    """The tiny-imagenet-200/ layout with ``classes`` wnids and small JPEGs (64×64; one val image 32×32, resized)."""
    from PIL import Image

    base = root / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(classes)]
    (base / "val" / "images").mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for c, w in enumerate(wnids):
        d = base / "train" / w / "images"
        d.mkdir(parents=True, exist_ok=True)
        imgs = class_images(np.full(per_class, c), (3, 64, 64), seed=c)
        for i, img in enumerate(imgs):
            Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{w}_{i}.JPEG", quality=95)
    lines = []
    for i in range(n_val):
        c = i % classes
        img = class_images(np.array([c]), (3, 64, 64), seed=100 + i)[0].transpose(1, 2, 0)
        size = 32 if i == 0 else 64
        Image.fromarray(img).resize((size, size)).save(base / "val" / "images" / f"val_{i}.JPEG", quality=95)
        lines.append(f"val_{i}.JPEG\t{wnids[c]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root



class SummedOverT(nn.Module):
    """What NeuroBench runs: images in, an snnlth-protocol model's logits summed over T out."""

    def __init__(self, model: nn.Module, timesteps: int) -> None:
        super().__init__()
        self.model, self.timesteps = model, timesteps

    def forward(self, x):
        return self.model(x, self.timesteps).sum(0)


def sparse_ticket(name: str, images, timesteps: int = 3, sparsity: float = 0.5, seed: int = 0) -> nn.Module:
    """An snnlth model with ``sparsity`` of every conv/linear weight set to exactly 0, its BatchNorm statistics
    those of ``images`` (real ones: as after training; with the initial ones nothing spikes in eval mode)."""
    import torch

    from snnlth.config import ModelConfig
    from snnlth.models.catalog import create_model

    torch.manual_seed(seed)
    model = create_model(ModelConfig(model=name, timesteps=timesteps), 1, 28, 10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight[torch.rand_like(m.weight) < sparsity] = 0
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: one pass sets them
        model.train()(images, timesteps)
    return model.eval()


def spikingjelly_nir(graph, x, timesteps: int, dtype=None):
    """Per-step outputs ``[T, B, C]`` of a NIR ``graph`` run by spikingjelly's importer, one call per step with the
    state passed back (``state=None``: a fresh start), the same input at every step."""
    import torch
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    dtype = dtype or torch.float32
    module, state, outs = import_from_nir(graph, dt=1e-4, step_mode="s", dtype=dtype), None, []
    with torch.no_grad():
        for _ in range(timesteps):
            y, state = module(x.to(dtype), state)
            outs.append(y)
    return torch.stack(outs)
