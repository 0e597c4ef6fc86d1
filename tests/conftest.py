import pytest
import torch

from tests.helpers import make_fmnist


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


@pytest.fixture
def fmnist_dir(tmp_path):
    return make_fmnist(tmp_path / "fmnist")
