"""The data protocol: what the engine trains and evaluates from.

A :class:`DataSource` yields batches ``(x, y)`` already on its ``device``; the training order (and augmentation) of
an epoch is a pure function of ``(seed, stream, epoch)``, so a resumed run replays exactly the batches it would have
seen. Two implementations: the device-resident :class:`snnlth.data.loader.DataBundle` (snnlth's datasets, batched and
augmented on the device) and :class:`TorchSource` (any ``torch.utils.data.Dataset`` or ``DataLoader``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset

from snnlth.rng import ET_BATCH_OFFSET, epoch_generator

Batch = tuple[torch.Tensor, torch.Tensor]


@runtime_checkable
class DataSource(Protocol):
    """Device batches for the engine (see the module docstring)."""

    device: torch.device

    @property
    def num_train(self) -> int: ...

    def train_batches(self, batch_size: int, seed: int, stream: int, epoch: int) -> Iterator[Batch]:
        """Shuffled (and augmented) training batches of one epoch; a final batch of one image is dropped."""

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        """Un-augmented batches of ``split`` ("test" or "train"), in order."""

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """``n`` fixed training inputs, un-augmented, the same for a given seed (the Early-Time KL batch)."""


class TorchSource:
    """A :class:`DataSource` over a ``Dataset`` (or a ``DataLoader``, whose dataset, ``collate_fn`` and
    ``num_workers`` are used; its own batch size and order are not: the engine's batch size and a
    ``(seed, stream, epoch)`` order are). Items are ``(x, y)`` pairs.

    The order is deterministic; random transforms inside the dataset are too when ``num_workers >= 1`` (each epoch
    seeds its workers from the same generator), and draw from the global RNG otherwise.
    """

    def __init__(self, train: Dataset | DataLoader, test: Dataset | DataLoader,
                 device: str | torch.device = "cpu") -> None:
        self.train, self.test = _dataset(train), _dataset(test)
        self.collate_fn = getattr(train, "collate_fn", None) if isinstance(train, DataLoader) else None
        self.num_workers = train.num_workers if isinstance(train, DataLoader) else 0
        self.device = torch.device(device)

    @property
    def num_train(self) -> int:
        return len(self.train)

    def _loader(self, dataset: Dataset, batch_size: int, order: list[int] | None,
                gen: torch.Generator | None) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, sampler=order, shuffle=False, generator=gen,
                          num_workers=self.num_workers, collate_fn=self.collate_fn,
                          pin_memory=self.device.type == "cuda")

    def _to_device(self, batch) -> Batch:
        x, y = batch[0], batch[1]
        return x.to(self.device, non_blocking=True), torch.as_tensor(y).to(self.device, non_blocking=True)

    def train_batches(self, batch_size: int, seed: int, stream: int, epoch: int) -> Iterator[Batch]:
        gen = epoch_generator(seed, epoch, stream)
        order = torch.randperm(self.num_train, generator=gen).tolist()
        for batch in self._loader(self.train, batch_size, order, gen):
            if len(batch[1]) < 2:
                break  # BatchNorm cannot train on a single image
            yield self._to_device(batch)

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        dataset = self.test if split == "test" else self.train
        for batch in self._loader(dataset, batch_size, None, None):
            yield self._to_device(batch)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed + ET_BATCH_OFFSET)
        idx = torch.randperm(self.num_train, generator=gen)[: min(n, self.num_train)].tolist()
        return torch.stack([torch.as_tensor(self.train[i][0]) for i in idx]).to(self.device)


def _dataset(obj: Dataset | DataLoader) -> Dataset:
    return obj.dataset if isinstance(obj, DataLoader) else obj
