"""The data protocol: the device-resident bundle and a torch Dataset both feed the one training loop."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from snnlth.config import DataConfig, ModelConfig, TrainConfig
from snnlth.data import DataSource, TorchSource, load_data
from snnlth.data.augment import normalize
from snnlth.engine.evaluate import evaluate
from snnlth.engine.loop import FitSettings, Schedule, fit
from snnlth.engine.optim import make_optimizer
from snnlth.models import create_model


def _torch_source(bundle, loader: bool = False) -> TorchSource:
    train = TensorDataset(normalize(bundle.train_x, (0.5,), (0.5,)), bundle.train_y)
    test = TensorDataset(normalize(bundle.test_x, (0.5,), (0.5,)), bundle.test_y)
    if loader:
        train = DataLoader(train, batch_size=999, shuffle=True)  # its batch size and order are not used
    return TorchSource(train, test)


def test_both_sources_implement_the_protocol(fmnist_dir):
    bundle = load_data(DataConfig(), torch.device("cpu"), data_dir=str(fmnist_dir))
    assert isinstance(bundle, DataSource) and isinstance(_torch_source(bundle), DataSource)


def test_torch_source_order_is_a_pure_function_of_seed_stream_epoch(fmnist_dir):
    bundle = load_data(DataConfig(), torch.device("cpu"), data_dir=str(fmnist_dir))
    src = _torch_source(bundle, loader=True)
    a = [y for _, y in src.train_batches(64, seed=0, stream=1, epoch=2)]
    b = [y for _, y in src.train_batches(64, seed=0, stream=1, epoch=2)]
    c = [y for _, y in src.train_batches(64, seed=0, stream=2, epoch=2)]
    assert [len(y) for y in a] == [64, 64, 64, 8]
    assert all(torch.equal(p, q) for p, q in zip(a, b)) and not torch.equal(a[0], c[0])
    assert sorted(torch.cat(a).tolist()) == sorted(bundle.train_y.tolist())
    assert torch.equal(src.sample(10, seed=3), src.sample(10, seed=3)) and src.sample(10, 3).shape == (10, 1, 28, 28)


def test_a_torch_dataset_trains_like_the_bundle_without_augmentation(fmnist_dir):
    """Same images, same order rule, no augmentation: the two sources give the same training, step for step."""
    bundle = load_data(DataConfig(augment=False), torch.device("cpu"), data_dir=str(fmnist_dir))
    results = []
    for data in (bundle, _torch_source(bundle)):
        torch.manual_seed(0)
        model = create_model(ModelConfig(model="lenet300", timesteps=2), 1, 28, 10)
        cfg = TrainConfig(epochs=2, batch_size=50, lr=0.05)
        state = fit(model, make_optimizer(model, cfg), data, FitSettings(cfg), Schedule(2, 2))
        results.append(([h["train_loss"] for h in state.history], evaluate(model, data, 2)["accuracy"]))
    assert results[0][0] == results[1][0] and results[0][1] == results[1][1]
