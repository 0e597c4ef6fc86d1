"""TinyImageNet (200 classes, 64×64 RGB) from its standard ``tiny-imagenet-200/`` layout, decoded once into a uint8
cache file (JPEG decoding of 110,000 images takes minutes; loading the cache, a second).

Layout: ``wnids.txt`` (one class id per line, in label order), ``train/<wnid>/images/*.JPEG`` and
``val/images/*.JPEG`` with ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>...``). The validation split is the
test set, as in the paper's code. The cache is named after a digest of the file list and sizes, so a changed dataset
is decoded again; it lives next to the data, or in ``cache_dir``.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from snnlth.errors import DataError
from snnlth.rundir.atomic import atomic_write_bytes

LAYOUT = ("tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
          "val/val_annotations.txt")
SIZE = 64


def _files(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Class ids, and (file, label) of the train and val images; a DataError naming the layout otherwise."""
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        raise DataError(f"{root} lacks wnids.txt: expected {LAYOUT}")
    wnids = [w.strip() for w in wnids_file.read_text().splitlines() if w.strip()]
    label = {w: i for i, w in enumerate(wnids)}
    train = [(p, label[w]) for w in wnids for p in sorted((root / "train" / w / "images").glob("*.JPEG"))]
    annotations = root / "val" / "val_annotations.txt"
    if not train or not annotations.is_file():
        raise DataError(f"{root} lacks {'train images' if not train else 'val/val_annotations.txt'}: expected "
                        f"{LAYOUT}")
    val = []
    for n, line in enumerate(annotations.read_text().splitlines()):
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in label:
            raise DataError(f"{annotations} line {n + 1} is not 'file<TAB>wnid' with a wnid of wnids.txt: expected "
                            f"{LAYOUT}")
        val.append((root / "val" / "images" / parts[0], label[parts[1]]))
    return wnids, train, val


def _decode(files: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    x = np.empty((len(files), 3, SIZE, SIZE), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if img.size != (SIZE, SIZE):
                    img = img.resize((SIZE, SIZE))
                x[i] = np.asarray(img).transpose(2, 0, 1)
        except FileNotFoundError:
            raise DataError(f"{path} not found (listed in val_annotations.txt): expected {LAYOUT}") from None
        except OSError as exc:
            raise DataError(f"{path} is not a readable image ({exc}); restore it from the TinyImageNet archive"
                            ) from None
    return x, np.array([label for _, label in files], dtype=np.int64)


def load_tinyimagenet(root: Path, cache_dir: Path | None = None) -> tuple[tuple, tuple]:
    """``((x_train, y_train), (x_val, y_val))`` as uint8 ``[N, 3, 64, 64]`` and int64 labels."""
    base = root / "tiny-imagenet-200" if (root / "tiny-imagenet-200").is_dir() else root
    _, train, val = _files(base)
    digest = hashlib.sha256()
    for path, label in train + val:
        digest.update(f"{path.relative_to(base)}:{label}:{path.stat().st_size if path.exists() else -1}\n".encode())
    cache = Path(cache_dir or base) / f"tinyimagenet-{SIZE}px-{digest.hexdigest()[:12]}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as z:
                return (z["x_train"], z["y_train"]), (z["x_val"], z["y_val"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is decoded again
    (xt, yt), (xv, yv) = _decode(train), _decode(val)
    buf = io.BytesIO()
    np.savez(buf, x_train=xt, y_train=yt, x_val=xv, y_val=yv)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache, buf.getvalue())
    except OSError as exc:
        raise DataError(f"cannot write the TinyImageNet cache {cache} ({exc}); pass --cache-dir DIR, a writable "
                        "directory") from None
    return (xt, yt), (xv, yv)
