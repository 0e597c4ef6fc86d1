"""Dataset registry: where each dataset's files live, how to parse them, and its augmentation recipe."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snnlth.data.formats import read_cifar_batch, read_idx_pair, read_svhn_mat
from snnlth.data.tinyimagenet import load_tinyimagenet
from snnlth.errors import DataError
from snnlth.registry import Registry

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts of a dataset. ``load(dir) -> (train, test)`` arrays; ``search_dirs`` are tried in order."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int
    hflip: bool
    cutout: int  # side of the Cutout hole in pixels, 0 = none
    marker: str  # a file or dir whose presence identifies the dataset's directory
    load: Callable[[Path, Path | None], tuple[Arrays, Arrays]]  # (directory, cache directory or None)
    system_dirs: tuple[str, ...] = ()
    how_to_get: str = ""
    subdirs: tuple[str, ...] = ()  # sub-directories of a data directory that may hold it (besides its name)


DATASETS: Registry[DatasetSpec] = Registry("dataset")

_FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_FMNIST_FIX = "reinstall with `apt-get install --reinstall dataset-fashion-mnist` or pass --data-dir DIR"


def _load_fmnist(root: Path, cache_dir: Path | None = None) -> tuple[Arrays, Arrays]:
    names = [root / n for n in _FMNIST_FILES]
    return read_idx_pair(names[0], names[1], _FMNIST_FIX), read_idx_pair(names[2], names[3], _FMNIST_FIX)


def _cifar_loader(subdir: str, train_files: tuple[str, ...], test_file: str, label_key: bytes):
    fix = f"restore the {subdir} files (the python version from the CIFAR site) or pass --data-dir DIR"

    def load(root: Path, cache_dir: Path | None = None) -> tuple[Arrays, Arrays]:
        base = root / subdir if (root / subdir).is_dir() else root
        parts = [read_cifar_batch(base / f, label_key, fix) for f in train_files]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        return train, read_cifar_batch(base / test_file, label_key, fix)

    return load


DATASETS.register("fmnist")(DatasetSpec(
    "fmnist", 10, 1, 28, (0.5,), (0.5,), crop_padding=4, hflip=True, cutout=0,
    marker=_FMNIST_FILES[0], load=_load_fmnist, system_dirs=("/usr/share/datasets/fashion-mnist",),
    subdirs=("fashion-mnist",),
    how_to_get="install it with `apt-get install -y dataset-fashion-mnist` (as root), or put the four IDX .gz files "
               "in a directory and pass --data-dir DIR or set SNNLTH_DATA"))
DATASETS.register("cifar10")(DatasetSpec(
    "cifar10", 10, 3, 32, (0.4913, 0.4821, 0.4465), (0.2023, 0.1994, 0.2010), crop_padding=4, hflip=True, cutout=16,
    marker="cifar-10-batches-py", load=_cifar_loader(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", b"labels"),
    how_to_get="unpack cifar-10-python.tar.gz into a directory and pass --data-dir DIR or set SNNLTH_DATA"))
DATASETS.register("cifar100")(DatasetSpec(
    "cifar100", 100, 3, 32, (0.5071, 0.4867, 0.4408), (0.2673, 0.2564, 0.2762), crop_padding=4, hflip=True,
    cutout=16, marker="cifar-100-python", load=_cifar_loader("cifar-100-python", ("train",), "test", b"fine_labels"),
    how_to_get="unpack cifar-100-python.tar.gz into a directory and pass --data-dir DIR or set SNNLTH_DATA"))

_SVHN_FIX = "put the SVHN cropped-digits files train_32x32.mat and test_32x32.mat there (format 2 of the SVHN site)"


def _load_svhn(root: Path, cache_dir: Path | None = None) -> tuple[Arrays, Arrays]:
    return read_svhn_mat(root / "train_32x32.mat", _SVHN_FIX), read_svhn_mat(root / "test_32x32.mat", _SVHN_FIX)


DATASETS.register("svhn")(DatasetSpec(
    "svhn", 10, 3, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), crop_padding=4, hflip=True, cutout=0,
    marker="train_32x32.mat", load=_load_svhn,
    how_to_get="put train_32x32.mat and test_32x32.mat (SVHN format 2) in a directory and pass --data-dir DIR or "
               "set SNNLTH_DATA"))
DATASETS.register("tinyimagenet")(DatasetSpec(
    "tinyimagenet", 200, 3, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), crop_padding=8, hflip=True, cutout=0,
    marker="wnids.txt", load=load_tinyimagenet, subdirs=("tiny-imagenet-200",),
    how_to_get="unzip tiny-imagenet-200.zip into a directory and pass --data-dir DIR or set SNNLTH_DATA (decoded "
               "once into a cache file next to it, or in --cache-dir)"))


def find_dataset_dir(spec: DatasetSpec, data_dir: str | None) -> Path:
    """The first of ``--data-dir``, ``$SNNLTH_DATA``, the system dirs that holds the dataset (directly or in a
    sub-directory named after the dataset); a :class:`DataError` listing where it looked otherwise."""
    candidates = [Path(d) for d in (data_dir, os.environ.get("SNNLTH_DATA")) if d] + [Path(d) for d in spec.system_dirs]
    looked = []
    for base in candidates:
        for d in (base, base / spec.name, *(base / sub for sub in spec.subdirs)):
            looked.append(str(d))
            if (d / spec.marker).exists() or (d.name == spec.marker and d.is_dir()):
                return d
    if data_dir and not Path(data_dir).is_dir():
        raise DataError(f"--data-dir {data_dir} is not a directory; pass the directory holding the {spec.name} files")
    where = ", ".join(dict.fromkeys(looked)) or "nowhere (no --data-dir, no SNNLTH_DATA)"
    raise DataError(f"{spec.name} not found (looked in {where}); {spec.how_to_get}")
