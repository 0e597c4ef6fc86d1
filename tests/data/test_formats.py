import gzip
import pickle

import numpy as np
import pytest

from snnlth.data.formats import read_cifar_batch, read_idx, read_idx_pair
from snnlth.errors import DataError
from tests.helpers import idx_bytes, write_cifar_batch, write_idx


def test_idx_roundtrip_gz_and_raw(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.gz", "a.idx"):
        write_idx(tmp_path / name, arr)
        assert np.array_equal(read_idx(tmp_path / name), arr)


def test_idx_truncated(tmp_path):
    raw = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    (tmp_path / "t.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t.gz")


def test_idx_gzip_cut_short(tmp_path):
    blob = gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    (tmp_path / "t.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated or not valid gzip"):
        read_idx(tmp_path / "t.gz")


def test_idx_bad_magic_and_missing(tmp_path):
    (tmp_path / "b.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "b.idx")
    with pytest.raises(DataError, match="not found; get it"):
        read_idx(tmp_path / "none.gz", "get it")


def test_idx_pair_mismatch(tmp_path):
    write_idx(tmp_path / "i.gz", np.zeros((4, 28, 28), np.uint8))
    write_idx(tmp_path / "l.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="do not match"):
        read_idx_pair(tmp_path / "i.gz", tmp_path / "l.gz", "fix")
    write_idx(tmp_path / "l.gz", np.arange(4, dtype=np.uint8))
    x, y = read_idx_pair(tmp_path / "i.gz", tmp_path / "l.gz", "fix")
    assert x.shape == (4, 1, 28, 28) and y.dtype == np.int64


def test_cifar_batch(tmp_path):
    labels = np.array([3, 1, 4, 1, 5])
    write_cifar_batch(tmp_path / "b", labels, "labels", 0)
    x, y = read_cifar_batch(tmp_path / "b", b"labels", "fix")
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.uint8 and y.tolist() == labels.tolist()


def test_cifar_refuses_code_and_garbage(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="forbidden global"):
        read_cifar_batch(tmp_path / "evil", b"labels", "fix")
    (tmp_path / "junk").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a readable CIFAR"):
        read_cifar_batch(tmp_path / "junk", b"labels", "fix")
    (tmp_path / "keys").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DataError, match="lacks the keys"):
        read_cifar_batch(tmp_path / "keys", b"labels", "fix")
    (tmp_path / "shape").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match="expected N×3072"):
        read_cifar_batch(tmp_path / "shape", b"labels", "fix")
