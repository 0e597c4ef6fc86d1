"""Whole datasets held as uint8 tensors on the training device, batched without a DataLoader: the device-resident
implementation of the data protocol (:mod:`snnlth.data.source`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from snnlth.config import DataConfig
from snnlth.data.augment import augment, draw_epoch, normalize
from snnlth.data.catalog import DATASETS, DatasetSpec, find_dataset_dir
from snnlth.data.source import Batch
from snnlth.errors import ConfigError, DataError
from snnlth.rng import ET_BATCH_OFFSET, epoch_generator


@dataclass
class DataBundle:
    """A loaded dataset: ``*_x`` uint8 ``[N, C, S, S]`` and ``*_y`` int64 ``[N]`` on ``device``."""

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    image_size: int
    augment: bool

    @property
    def num_train(self) -> int:
        return len(self.train_y)

    @property
    def device(self) -> torch.device:
        return self.train_y.device

    # the DataSource protocol (snnlth.data.source)
    def train_batches(self, batch_size: int, seed: int, stream: int, epoch: int) -> Iterator[Batch]:
        return train_batches(self, batch_size, epoch_generator(seed, epoch, stream))

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        return eval_batches(self, batch_size, split)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """``n`` training images (normalised, not augmented), the same for a given seed: ``[N, C, H, W]``."""
        gen = torch.Generator().manual_seed(seed + ET_BATCH_OFFSET)
        idx = torch.randperm(self.num_train, generator=gen)[: min(n, self.num_train)].to(self.device)
        return normalize(self.train_x[idx], self.spec.mean, self.spec.std)


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` samples keeping class proportions (largest-remainder rounding), seeded, sorted."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = n * counts / counts.sum()
    take = np.floor(quota).astype(int)
    extra = np.argsort(-(quota - take), kind="stable")[: n - take.sum()]
    take[extra] += 1
    picks = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picks))


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int, flag: str, split: str):
    if n is None:
        return x, y
    if n > len(y):
        raise ConfigError(f"{flag} {n} is larger than the {len(y)} {split} images; use at most {len(y)} or drop it")
    idx = stratified_subset(y, n, seed)
    return x[idx], y[idx]


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or size == x.shape[-1]:
        return x
    out = [F.interpolate(c.float(), size=(size, size), mode="bilinear", align_corners=False) for c in x.split(4096)]
    return torch.cat(out).round().clamp(0, 255).to(torch.uint8)


def load_data(cfg: DataConfig, device: torch.device, seed: int = 0, data_dir: str | None = None,
              cache_dir: str | None = None) -> DataBundle:
    """Find (in ``data_dir``, else ``$SNNLTH_DATA``, then the system's directories), parse (decoded files cached in
    ``cache_dir``, else next to the data), subset (stratified, seeded by ``seed``), resize and move a dataset to
    ``device``."""
    spec = DATASETS.get(cfg.dataset)
    cache = Path(cache_dir) if cache_dir else None
    root = find_dataset_dir(spec, data_dir)
    (trx, tr_y), (tex, te_y) = spec.load(root, cache)
    for split, x, y in (("training", trx, tr_y), ("test", tex, te_y)):
        check_arrays(spec, root, split, x, y)
    trx, tr_y = _subset(trx, tr_y, cfg.train_subset, seed, "--train-subset", "training")
    tex, te_y = _subset(tex, te_y, cfg.test_subset, seed, "--test-subset", "test")
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in (trx, tr_y, tex, te_y)]
    tensors[0], tensors[2] = _resize(tensors[0], cfg.resize), _resize(tensors[2], cfg.resize)
    tensors = [t.to(device) for t in tensors]
    return DataBundle(spec, *tensors, image_size=int(tensors[0].shape[-1]), augment=cfg.augment)



def check_arrays(spec: DatasetSpec, root: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """The decoded files hold what ``spec`` says: uint8 images ``[N, C, S, S]`` and N labels in ``0..classes-1``;
    anything else is a :class:`DataError` spelling out the expected layout."""
    want = f"[N, {spec.in_channels}, {spec.image_size}, {spec.image_size}]"
    if x.ndim != 4 or x.shape[1:] != (spec.in_channels, spec.image_size, spec.image_size):
        raise DataError(f"{spec.name} in {root}: the {split} images are {list(x.shape)}, expected {want} uint8 "
                        f"({spec.how_to_get or 'see docs/extending.md'})")
    if len(y) != len(x):
        raise DataError(f"{spec.name} in {root}: {len(x)} {split} images but {len(y)} labels; the files do not "
                        f"belong together ({spec.how_to_get or 'restore them'})")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= spec.num_classes):
        raise DataError(f"{spec.name} in {root}: {split} labels span {int(y.min())}..{int(y.max())}, expected "
                        f"0..{spec.num_classes - 1} ({spec.how_to_get or 'restore the files'})")


def load_dataset(name: str = "fmnist", *, train_subset: int | None = None, test_subset: int | None = None,
                 resize: int | None = None, data_dir: str | None = None, seed: int = 0
                 ) -> tuple[Batch, Batch]:
    """``((x_train, y_train), (x_test, y_test))`` of a dataset snnlth reads from disk (``fmnist``, ``cifar10``,
    ``cifar100``): float inputs ``[N, C, H, W]`` normalised per channel, int64 labels, on the CPU, un-augmented;
    subsets are stratified and seeded. What :func:`snnlth.find_ticket` takes as ``train`` and ``test``."""
    from snnlth.config import DataConfig

    cfg = DataConfig(dataset=name, train_subset=train_subset, test_subset=test_subset, augment=False, resize=resize)
    data = load_data(cfg, torch.device("cpu"), seed=seed, data_dir=data_dir)
    return tuple((torch.cat([x for x, _ in eval_batches(data, 4096, split)]), y)  # type: ignore[return-value]
                 for split, y in (("train", data.train_y.long()), ("test", data.test_y.long())))


def train_batches(data: DataBundle, batch_size: int, gen: torch.Generator) -> Iterator[Batch]:
    """Shuffled, augmented training batches ``(x: [B, C, S, S] float, y: [B])``; a final batch of one is dropped
    (BatchNorm cannot train on a single image)."""
    s, n = data.spec, data.num_train
    perm = torch.randperm(n, generator=gen)
    if data.augment:  # the epoch's order and random draws reach the device in one copy
        h, w = data.train_x.shape[-2:]
        plan = torch.cat([perm[:, None], draw_epoch(n, h, w, s.crop_padding, gen)], 1).to(data.device)
    else:
        plan = perm[:, None].to(data.device)
    for start in range(0, n, batch_size):
        rows = plan[start: start + batch_size]
        if len(rows) < 2:
            break
        idx = rows[:, 0]
        x = data.train_x[idx]
        if data.augment:
            x = augment(x, s.mean, s.std, s.crop_padding, s.hflip, s.cutout, rows[:, 1:])
        else:
            x = normalize(x, s.mean, s.std)
        yield x, data.train_y[idx]


def eval_batches(data: DataBundle, batch_size: int, split: str = "test") -> Iterator[Batch]:
    """Normalised, un-augmented batches of ``split`` ("test" or "train") in order."""
    xs, ys = (data.test_x, data.test_y) if split == "test" else (data.train_x, data.train_y)
    for start in range(0, len(ys), batch_size):
        yield normalize(xs[start: start + batch_size], data.spec.mean, data.spec.std), ys[start: start + batch_size]
