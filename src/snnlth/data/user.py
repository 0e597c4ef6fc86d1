"""A user's own data for :func:`snnlth.find_ticket`: ``(x, y)`` tensors, a ``Dataset`` or a ``DataLoader``, turned
into a :class:`~snnlth.data.source.DataSource`, checked (one line per problem), and fingerprinted (part of a run's
identity, so a rerun on other data never resumes a directory searched on this data)."""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from snnlth.data.source import Batch, TorchSource
from snnlth.errors import DataError
from snnlth.rng import ET_BATCH_OFFSET, epoch_generator

UserData = tuple | list | Dataset | DataLoader  # (x, y) tensors, a Dataset of (x, y) items, or a DataLoader

_FINGERPRINT_ITEMS = 16  # items of a Dataset hashed into its fingerprint (tensors are hashed whole)


class TensorSource:
    """A :class:`~snnlth.data.source.DataSource` over ``(x, y)`` tensors, held on ``device`` and cut into batches
    there (no per-item indexing): the fast path for data that fits on the device. Same order rule as every source:
    epoch e of stream s is a pure function of ``(seed, s, e)``."""

    def __init__(self, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.x_train, self.y_train = (t.to(self.device) for t in train)
        self.x_test, self.y_test = (t.to(self.device) for t in test)

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    def train_batches(self, batch_size: int, seed: int, stream: int, epoch: int) -> Iterator[Batch]:
        order = torch.randperm(self.num_train, generator=epoch_generator(seed, epoch, stream)).to(self.device)
        for start in range(0, self.num_train, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                break  # BatchNorm cannot train on a single image
            yield self.x_train[idx], self.y_train[idx]

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        x, y = (self.x_test, self.y_test) if split == "test" else (self.x_train, self.y_train)
        for start in range(0, len(y), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]

    def sample(self, n: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed + ET_BATCH_OFFSET)
        idx = torch.randperm(self.num_train, generator=gen)[: min(n, self.num_train)].to(self.device)
        return self.x_train[idx]


class CheckedTorchSource(TorchSource):
    """A :class:`TorchSource` that checks every batch's labels on the CPU, before they reach the device (an
    out-of-range label would be a CUDA device assert there)."""

    def __init__(self, train: Dataset | DataLoader, test: Dataset | DataLoader, device: str | torch.device,
                 num_classes: int) -> None:
        super().__init__(train, test, device)
        self.num_classes = num_classes

    def _to_device(self, batch) -> Batch:
        y = torch.as_tensor(batch[1])
        _check_label_type("a batch's", y)
        check_labels(y, self.num_classes, "a batch")
        x, y = super()._to_device((batch[0], y))
        return _float32(x), y

    def sample(self, n: int, seed: int) -> torch.Tensor:
        return _float32(super().sample(n, seed))


def is_tensor_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)


def _kind_error(name: str, data: Any) -> DataError:
    return DataError(f"{name} is a {type(data).__name__}; give (x, y) tensors (torch.as_tensor for numpy arrays), a "
                     "torch Dataset of (x, y) items or a DataLoader")


def _float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype == torch.float64 else x  # numpy's default float64, for a float32 network


def _check_label_type(name: str, y: torch.Tensor, one_d: bool = True) -> None:
    if (one_d and y.dim() != 1) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(f"{name} labels must be integer class indices{' in a 1-D tensor' if one_d else ''} (got "
                        f"{y.dtype} of shape {tuple(y.shape)})")


def check_tensors(name: str, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data
    if not x.is_floating_point():
        raise DataError(f"{name} x is {x.dtype}; give float inputs (e.g. x.float() / 255 for uint8 images)")
    _check_label_type(name, y)
    if len(x) != len(y):
        raise DataError(f"{name} has {len(x)} inputs but {len(y)} labels; give one label per input")
    if len(y) < 2:
        raise DataError(f"{name} has {len(y)} item(s); give at least 2")
    return _float32(x), y.long()


def first_input(name: str, data: UserData) -> torch.Tensor:
    """One input (without the batch dimension) of ``data``, to check shapes and run the model on."""
    if is_tensor_pair(data):
        return check_tensors(name, data)[0][0]
    dataset = data.dataset if isinstance(data, DataLoader) else data
    if isinstance(dataset, (tuple, list, str, bytes, dict)) or not hasattr(dataset, "__getitem__"):
        raise _kind_error(name, data)  # a pair of numpy arrays too: torch.as_tensor them
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"{name}: an iterable dataset has no length; give a map-style Dataset or tensors") from None
    if n < 2:
        raise DataError(f"{name} has {n} item(s); give at least 2")
    item = dataset[0]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise DataError(f"{name} items must be (x, y) pairs (got {type(item).__name__}); make __getitem__ return "
                        "(input, label)")
    try:
        x, y = torch.as_tensor(item[0]), torch.as_tensor(item[1])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{name} items cannot be made tensors ({type(exc).__name__}); return tensors from "
                        "__getitem__ (e.g. a ToTensor-like transform)") from None
    if not x.is_floating_point():
        raise DataError(f"{name} inputs are {x.dtype}; give float inputs (e.g. a ToTensor-like transform)")
    _check_label_type(name, y, one_d=False)
    return _float32(x)


def check_labels(y: torch.Tensor, num_classes: int, where: str) -> None:
    """Labels are class indices in [0, num_classes) of the model's output."""
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise DataError(f"label {bad} in {where} is outside the model's {num_classes} classes (0..{num_classes - 1});"
                        " give labels 0..C-1 or a model with more outputs")


def _known_labels(data: UserData) -> torch.Tensor | None:
    """All labels without loading inputs: tensors, or a dataset's ``targets`` / ``labels`` attribute."""
    if is_tensor_pair(data):
        return data[1]
    dataset = data.dataset if isinstance(data, DataLoader) else data
    for attr in ("targets", "labels"):
        value = getattr(dataset, attr, None)
        if value is not None:
            try:
                return torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError):
                return None
    return None


def make_source(train: UserData, test: UserData, device: torch.device, num_classes: int):
    """The data source of a user's data, after checking what can be checked up front (labels of tensors and of
    datasets that list their targets; other datasets are checked batch by batch)."""
    for name, data in (("train", train), ("test", test)):
        labels = _known_labels(data)
        if labels is not None:
            check_labels(labels, num_classes, f"the {name} data")
    if is_tensor_pair(train) and is_tensor_pair(test):
        return TensorSource(check_tensors("train", train), check_tensors("test", test), device)
    if is_tensor_pair(train) != is_tensor_pair(test):
        raise DataError("give train and test the same way: both (x, y) tensors, or both Datasets/DataLoaders")
    return CheckedTorchSource(train, test, device, num_classes)


def fingerprint(train: UserData, test: UserData) -> dict[str, Any]:
    """What identifies the data of a run: sizes and a SHA-256 over the tensors (whole), or over 16 items spread over a
    dataset (drawn with fixed random state, so random transforms give the same items every time) and its
    ``targets`` when it lists them."""
    out = {}
    for name, data in (("train", train), ("test", test)):
        digest = hashlib.sha256()
        if is_tensor_pair(data):
            items, size = list(data), len(data[1])
        else:
            dataset = data.dataset if isinstance(data, DataLoader) else data
            size = len(dataset)
            picks = sorted({round(i * (size - 1) / (_FINGERPRINT_ITEMS - 1)) for i in range(_FINGERPRINT_ITEMS)})
            with torch.random.fork_rng(devices=[]), _python_random(0):
                torch.manual_seed(0)
                items = [torch.as_tensor(t) for i in picks for t in dataset[i][:2]]
            labels = _known_labels(data)
            items += [labels] if labels is not None else []
        for t in items:
            t = torch.as_tensor(t)
            hash_tensor(digest, str((t.dtype, tuple(t.shape))), t)
        out[name] = {"items": size, "sha256": digest.hexdigest()[:16]}
    return out


def hash_tensor(digest: Any, header: str, t: torch.Tensor) -> None:
    """Feed ``header`` and the bytes of ``t`` (on the CPU, contiguous; the buffer itself, no copy) to ``digest``."""
    t = t.detach().cpu().contiguous()
    digest.update(header.encode())
    if t.numel():
        digest.update(t.reshape(-1).view(torch.uint8).numpy())


@contextlib.contextmanager
def _python_random(seed: int):
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)
