"""The real thing on real data: convnet on a Fashion-MNIST subset learns."""

from pathlib import Path

import pytest
import torch

from snnlth.api import train
from snnlth.config import DataConfig, ModelConfig, RuntimeConfig, TrainConfig, TrainRunConfig

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
def test_convnet_learns_fashion_mnist(tmp_path):
    assert FMNIST.is_dir(), "Fashion-MNIST missing: `make test` installs it (apt-get install dataset-fashion-mnist)"
    cfg = TrainRunConfig(data=DataConfig(train_subset=2000, test_subset=1000),
                         model=ModelConfig(model="convnet", timesteps=3),
                         train=TrainConfig(epochs=2, batch_size=64, lr=0.1), runtime=RuntimeConfig(device="cpu"))
    result = train(cfg, out=tmp_path / "run")
    torch.set_num_threads(2)
    assert result.summary["test_accuracy"] > 60.0  # chance is 10%
    assert result.summary["epochs"] == 2 and result.status == "trained"
