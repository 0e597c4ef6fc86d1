"""SVHN (.mat) and TinyImageNet (JPEG layout, decoded once into a cache) from tiny files in their real formats; one
line naming the expected layout for damaged or foreign files; each dataset found only in its own directories."""

import numpy as np
import pytest
import torch

from snnlth.cli import main
from snnlth.config import DataConfig
from snnlth.data import tinyimagenet
from snnlth.data.catalog import DATASETS, find_dataset_dir
from snnlth.data.loader import load_data
from snnlth.errors import DataError
from tests.helpers import make_fmnist, make_svhn, make_tinyimagenet, one_line_error


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path):
    root = make_svhn(tmp_path / "svhn")
    data = load_data(DataConfig(dataset="svhn"), torch.device("cpu"), data_dir=str(root))
    assert tuple(data.train_x.shape) == (60, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.train_y.tolist()[:11] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert len(data.test_y) == 30


def test_svhn_damaged_and_foreign_files_name_the_layout(tmp_path):
    from scipy.io import savemat

    root = make_svhn(tmp_path / "svhn")
    raw = (root / "train_32x32.mat").read_bytes()
    (root / "train_32x32.mat").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="X \\(32×32×3×N uint8\\)"):
        load_data(DataConfig(dataset="svhn"), torch.device("cpu"), data_dir=str(root))
    savemat(root / "train_32x32.mat", {"images": np.zeros((4, 4), dtype=np.uint8)})
    with pytest.raises(DataError, match="not a MATLAB v5 .mat file holding X"):
        load_data(DataConfig(dataset="svhn"), torch.device("cpu"), data_dir=str(root))


def test_tinyimagenet_decodes_once_into_a_cache(tmp_path, monkeypatch):
    root = make_tinyimagenet(tmp_path / "data")
    cfg = DataConfig(dataset="tinyimagenet")
    where = {"data_dir": str(root), "cache_dir": str(tmp_path / "cache")}
    data = load_data(cfg, torch.device("cpu"), **where)
    assert tuple(data.train_x.shape) == (24, 3, 64, 64) and tuple(data.test_x.shape) == (8, 3, 64, 64)
    assert data.train_y.tolist() == [c for c in range(4) for _ in range(6)]
    assert data.test_y.tolist() == [i % 4 for i in range(8)]
    assert len(list((tmp_path / "cache").glob("tinyimagenet-64px-*.npz"))) == 1

    def no_decoding(_files):
        raise AssertionError("decoded again although the cache is there")

    monkeypatch.setattr(tinyimagenet, "_decode", no_decoding)
    again = load_data(cfg, torch.device("cpu"), **where)
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)


def test_tinyimagenet_wrong_layout_names_it(tmp_path):
    root = make_tinyimagenet(tmp_path / "data")
    (root / "tiny-imagenet-200" / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\n")
    with pytest.raises(DataError, match="expected tiny-imagenet-200/ with wnids.txt"):
        load_data(DataConfig(dataset="tinyimagenet"), torch.device("cpu"), data_dir=str(root))


def test_each_dataset_is_looked_for_in_its_own_directories(tmp_path, monkeypatch):
    make_fmnist(tmp_path / "base" / "fashion-mnist")
    make_svhn(tmp_path / "base" / "svhn")
    monkeypatch.setenv("SNNLTH_DATA", str(tmp_path / "base"))
    assert find_dataset_dir(DATASETS.get("svhn"), None) == tmp_path / "base" / "svhn"
    assert find_dataset_dir(DATASETS.get("fmnist"), None) == tmp_path / "base" / "fashion-mnist"
    with pytest.raises(DataError) as err:
        find_dataset_dir(DATASETS.get("cifar10"), None)
    assert "fashion-mnist" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["svhn", "tinyimagenet"])
def test_a_search_runs_on_each(dataset, tmp_path, capsys):
    root = make_svhn(tmp_path / "d") if dataset == "svhn" else make_tinyimagenet(tmp_path / "d")
    args = ["search", "--dataset", dataset, "--data-dir", str(root), "--model", "convnet", "--timesteps", "2",
            "--epochs", "1", "--rounds", "1", "--batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args) == 0
    assert main(["search", "--dataset", dataset, "--data-dir", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "x")]) == 2
    assert "not a directory" in one_line_error(capsys)
