"""Parsers for on-disk dataset formats: IDX (MNIST family, optionally gzip'd) and the CIFAR python pickles.

Each parser returns ``(images: uint8 [N, C, H, W], labels: int64 [N])`` as numpy arrays and raises
:class:`DataError` with the file name and a fix when a file is missing, truncated or malformed.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from pathlib import Path

import numpy as np

from snnlth.errors import DataError

_IDX_DTYPES = {0x08: np.uint8}


def _read_bytes(path: Path, fix: str) -> bytes:
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw
    except FileNotFoundError:
        raise DataError(f"{path} not found; {fix}") from None
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path} is truncated or not valid gzip ({exc}); {fix}") from None


def read_idx(path: str | Path, fix: str = "replace the file") -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array of the shape its header declares."""
    path = Path(path)
    raw = _read_bytes(path, fix)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number); {fix}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header; {fix}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(f"{path} is {what} ({len(raw)} bytes, header says {expected}); {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_pair(images_path: Path, labels_path: Path, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 1, H, W]`` and labels ``[N]`` from a pair of IDX files, checked against each other."""
    images, labels = read_idx(images_path, fix), read_idx(labels_path, fix)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{images_path} and {labels_path} do not match ({images.shape} vs {labels.shape}); {fix}")
    return images[:, None].copy(), labels.astype(np.int64)


class _ArrayUnpickler(pickle.Unpickler):
    """Only numpy array reconstruction is allowed: a CIFAR batch is data, never code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: str | Path, label_key: bytes, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: ``data`` (N×3072 uint8, channel-major) and the labels under ``label_key``."""
    path = Path(path)
    raw = _read_bytes(path, fix)
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged or foreign file
        raise DataError(f"{path} is not a readable CIFAR python batch ({type(exc).__name__}: {exc}); {fix}") from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DataError(f"{path} lacks the keys b'data' and {label_key!r} of a CIFAR batch; {fix}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(f"{path} holds data of shape {data.shape} ({data.dtype}), expected N×3072 uint8; {fix}")
    return data.reshape(-1, 3, 32, 32), labels


SVHN_LAYOUT = "a MATLAB v5 .mat file holding X (32×32×3×N uint8) and y (N×1 labels 1..10, 10 meaning digit 0)"


def read_svhn_mat(path: str | Path, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN cropped-digits file (``train_32x32.mat`` / ``test_32x32.mat``): images ``[N, 3, 32, 32]`` uint8 and
    labels ``[N]`` in 0..9 (the file's label 10 is digit 0)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found; {fix}")
    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged or foreign file
        raise DataError(f"{path} is not {SVHN_LAYOUT} ({type(exc).__name__}: {str(exc)[:80]}); {fix}") from None
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8 \
            or y.size != x.shape[3]:
        shapes = f"X {getattr(x, 'shape', None)}, y {getattr(y, 'shape', None)}"
        raise DataError(f"{path} holds {shapes}, not {SVHN_LAYOUT}; {fix}")
    labels = y.reshape(-1).astype(np.int64)
    if labels.min() < 1 or labels.max() > 10:
        raise DataError(f"{path} has labels outside 1..10, not {SVHN_LAYOUT}; {fix}")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels % 10
