import pytest

from snnlth.config import ModelConfig
from snnlth.errors import ConfigError
from snnlth.methods.kit import select_prunable
from snnlth.models import create_model


def test_exclude_matches_whole_dotted_paths():
    names = create_model(ModelConfig(model="vgg16"), 3, 32, 10).prunable_names()
    assert "features.1.0.weight" in names and "features.10.0.weight" in names
    kept = select_prunable(names, ("features.1",))
    assert "features.1.0.weight" not in kept and "features.10.0.weight" in kept and "features.11.0.weight" in kept
    assert len(kept) == len(names) - 1
    assert select_prunable(names, ("classifier.weight",)) == names[:-1]


def test_exclude_that_matches_nothing_is_an_error():
    names = ["features.10.0.weight", "classifier.weight"]
    with pytest.raises(ConfigError, match="--exclude features.1 matches no prunable tensor"):
        select_prunable(names, ("features.1",))
    with pytest.raises(ConfigError, match="--exclude classifier.w matches no"):
        select_prunable(names, ("classifier.w",))


@pytest.mark.parametrize("name", ["convnet", "lenet300"])
def test_dense_bytes_is_neurobenchs_footprint(name):
    pytest.importorskip("neurobench")
    from neurobench.metrics.static import Footprint
    from neurobench.models import TorchModel

    from snnlth.methods.kit import Sizes

    model = create_model(ModelConfig(model=name), 1, 28, 10)
    assert Sizes.of(model, ()).dense_bytes == Footprint()(TorchModel(model))  # parameters and buffers, dense
