import numpy as np
import pytest
import torch

from snnlth.config import DataConfig
from snnlth.data import load_data, stratified_subset, train_batches
from snnlth.data.augment import cutout, draw_epoch, normalize, random_crop
from snnlth.data.catalog import DATASETS, find_dataset_dir
from snnlth.data.loader import epoch_generator, eval_batches
from snnlth.errors import ConfigError, DataError
from tests.helpers import make_cifar10, make_cifar100

CPU = torch.device("cpu")


def test_fmnist_from_data_dir(fmnist_dir):
    d = load_data(DataConfig(), CPU, data_dir=str(fmnist_dir))
    assert d.train_x.shape == (200, 1, 28, 28) and d.train_x.dtype == torch.uint8
    assert d.test_x.shape == (100, 1, 28, 28) and d.spec.num_classes == 10


def test_env_var_is_second_choice(fmnist_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("SNNLTH_DATA", str(fmnist_dir))
    assert find_dataset_dir(DATASETS.get("fmnist"), None) == fmnist_dir
    other = tmp_path / "other"
    (other / "fmnist").mkdir(parents=True)
    (other / "fmnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert find_dataset_dir(DATASETS.get("fmnist"), str(other)) == other / "fmnist"  # --data-dir wins


def test_missing_dataset_message(tmp_path, monkeypatch):
    monkeypatch.delenv("SNNLTH_DATA", raising=False)
    with pytest.raises(DataError, match=r"cifar10 not found \(looked in .*\); unpack cifar-10-python"):
        load_data(DataConfig(dataset="cifar10"), CPU, data_dir=str(tmp_path))
    with pytest.raises(DataError, match="is not a directory"):
        load_data(DataConfig(dataset="cifar10"), CPU, data_dir=str(tmp_path / "nope"))


def test_cifar10_and_100(tmp_path):
    d = load_data(DataConfig(dataset="cifar10"), CPU, data_dir=str(make_cifar10(tmp_path / "c10")))
    assert d.train_x.shape == (100, 3, 32, 32) and d.test_y.shape == (20,)
    d = load_data(DataConfig(dataset="cifar100"), CPU, data_dir=str(make_cifar100(tmp_path / "c100")))
    assert d.spec.num_classes == 100 and int(d.train_y.max()) == 99


def test_stratified_subset_is_balanced_and_seeded():
    labels = np.repeat(np.arange(10), [100, 100, 100, 100, 100, 100, 100, 100, 100, 50])
    idx = stratified_subset(labels, 190, seed=1)
    assert len(idx) == 190 and len(set(idx)) == 190
    counts = np.bincount(labels[idx], minlength=10)
    assert counts[:9].tolist() == [20] * 9 and counts[9] == 10
    assert np.array_equal(idx, stratified_subset(labels, 190, seed=1))
    assert not np.array_equal(idx, stratified_subset(labels, 190, seed=2))


def test_subset_larger_than_data(fmnist_dir):
    with pytest.raises(ConfigError, match="--train-subset 500 is larger than the 200 training images"):
        load_data(DataConfig(train_subset=500), CPU, data_dir=str(fmnist_dir))


def test_resize(fmnist_dir):
    d = load_data(DataConfig(resize=32, train_subset=20), CPU, data_dir=str(fmnist_dir))
    assert d.train_x.shape == (20, 1, 32, 32) and d.image_size == 32


def test_augmented_batches_shapes_and_determinism(fmnist_dir):
    d = load_data(DataConfig(), CPU, data_dir=str(fmnist_dir))
    a = list(train_batches(d, 64, epoch_generator(0, 3)))
    b = list(train_batches(d, 64, epoch_generator(0, 3)))
    c = list(train_batches(d, 64, epoch_generator(0, 4)))
    assert [x.shape for x, _ in a] == [(64, 1, 28, 28)] * 3 + [(8, 1, 28, 28)]
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(d.train_y.tolist())


def test_eval_batches_unaugmented(fmnist_dir):
    d = load_data(DataConfig(), CPU, data_dir=str(fmnist_dir))
    x, y = next(eval_batches(d, 1000))
    assert torch.allclose(x, normalize(d.test_x, (0.5,), (0.5,))) and torch.equal(y, d.test_y)


def test_random_crop_is_a_shifted_window():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    out = random_crop(x, 2, draw_epoch(2, 6, 6, 2, torch.Generator().manual_seed(0))[:, :2])
    assert out.shape == x.shape
    for i in range(2):  # every nonzero value sits at a constant offset from its source
        nz = out[i, 0] > 0
        src = (out[i, 0][nz] - 1 - i * 36).long()
        rows, cols = torch.nonzero(nz, as_tuple=True)
        dr, dc = src // 6 - rows, src % 6 - cols
        assert dr.unique().numel() == 1 and dc.unique().numel() == 1


def test_cutout_zeroes_a_square():
    out = cutout(torch.ones(8, 3, 32, 32), 16, draw_epoch(8, 32, 32, 4, torch.Generator().manual_seed(0))[:, 3:])
    zeros = (out == 0).all(1).flatten(1).sum(1)
    assert ((zeros > 0) & (zeros <= 256)).all()
    assert (out[:, 0] == out[:, 2]).all()  # same hole in every channel


def test_cutout_hole_is_black_before_normalisation():
    """The official transform cuts the hole before normalising: hole pixels are (0 - mean) / std, not 0."""
    from snnlth.data.augment import augment

    mean, std = (0.4913, 0.4821, 0.4465), (0.2023, 0.1994, 0.2010)
    x = torch.full((6, 3, 32, 32), 200, dtype=torch.uint8)
    draws = draw_epoch(6, 32, 32, 0, torch.Generator().manual_seed(0))
    out = augment(x, mean, std, padding=0, hflip=False, cutout_size=16, draws=draws)
    black = torch.tensor([-m / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
    lit = torch.tensor([(200 / 255 - m) / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
    in_hole = torch.isclose(out, black.expand_as(out), atol=1e-5)
    assert (in_hole.all(1) | torch.isclose(out, lit.expand_as(out), atol=1e-5).all(1)).all()
    holes = in_hole.all(1).flatten(1).sum(1)
    assert ((holes >= 64) & (holes <= 256)).all()  # a 16-px square, clipped at most to a quarter


@pytest.mark.parametrize("channels", [1, 3])
def test_random_crop_gives_plain_strides(channels):
    # a permuted [B, H, W, C] crop of one-channel images reads as channels-last to the convolution (slow BN backward)
    x = torch.rand(4, channels, 8, 8)
    out = random_crop(x, 2, torch.tensor([[0, 1], [2, 3], [4, 0], [1, 1]]))
    assert out.stride() == (channels * 64, 64, 8, 1)


def test_an_epoch_reaches_the_device_in_one_copy(fmnist_dir, monkeypatch):
    """Order and augmentation draws of an epoch are copied to the device once, not per batch (a per-batch copy from
    pageable memory waits for the GPU)."""
    d = load_data(DataConfig(train_subset=160), CPU, data_dir=str(fmnist_dir))
    copies = []
    real_to = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        copies.append(tuple(self.shape))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    batches = list(train_batches(d, 32, epoch_generator(0, 0)))
    assert len(batches) == 5
    assert copies == [(160, 6)]


def test_labels_outside_the_classes_are_named_with_the_expected_range(tmp_path):
    import numpy as np

    from snnlth.errors import DataError
    from tests.helpers import make_fmnist, write_idx

    root = make_fmnist(tmp_path / "fm")
    labels = (np.arange(200) % 10).astype(np.uint8)
    labels[7] = 12
    write_idx(root / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match=r"fmnist in .*: training labels span 0..12, expected 0..9 \(install it"):
        load_data(DataConfig(), CPU, data_dir=str(root))
