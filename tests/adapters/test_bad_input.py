"""Bad input to find_ticket: one line naming the problem and the fix, a ValueError, and nothing written."""

import pytest
import torch
from torch import nn

import snnlth
from snnlth import adapters
from tests.adapters import nets


class SumOverTime(nn.Module):
    """Maps [T, B, ...] to [B, classes]: sums over time itself."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x_seq):
        return self.fc(x_seq.flatten(2)).sum(0)


def _data(n=8, classes=10, side=28):
    torch.manual_seed(0)
    return torch.rand(n, 1, side, side), torch.arange(n) % classes


CASES = {
    "output not [T, B, C]": (lambda: SumOverTime(), {}, "not [T, B, classes]"),
    "no prunable layers": (lambda: nn.Sequential(nn.Flatten(2)), {}, "no prunable layers"),
    "state leaks": (lambda: adapters.stepwise(nets.HandNet(), nets.hand_step, lambda net: None),
                    {}, "state leaks between batches"),
    "labels out of range": (nets.SeqNet, {"train": _data(n=12, classes=11)}, "outside the model's 10 classes"),
    "negative labels": (nets.SeqNet, {"test": (_data()[0], -torch.ones(8, dtype=torch.long))}, "label -1"),
    "shapes differ": (nets.SeqNet, {"test": _data(side=32)}, "same input shape"),
    "uint8 inputs": (nets.SeqNet, {"train": ((_data()[0] * 255).to(torch.uint8), _data()[1])}, "float inputs"),
    "float labels": (nets.SeqNet, {"train": (_data()[0], _data()[1].float())}, "integer class indices"),
    "not data": (nets.SeqNet, {"train": "images/"}, "give (x, y) tensors"),
    "unknown option": (nets.SeqNet, {"lrr": 0.1}, "did you mean"),
    "bad value": (nets.SeqNet, {"prune_rate": 1.5}, "--prune-rate must be in (0, 1)"),
    "unknown method": (nets.SeqNet, {"method": "lottery"}, "method"),
    "baseline without source": (nets.SeqNet, {"method": "reinit"}, "--from"),
    "per-step net given bare": (nets.HandNet, {}, "failed on a batch"),
    "not a module": (lambda: (lambda x: x), {}, "not a torch.nn.Module"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(name, tmp_path):
    build, kwargs, message = CASES[name]
    kwargs = {"train": _data(), "test": _data(), **kwargs}
    with pytest.raises(ValueError) as err:
        snnlth.find_ticket(build(), kwargs.pop("train"), kwargs.pop("test"), epochs=1, timesteps=2, device="cpu",
                           out=tmp_path / "run", runs_root=tmp_path / "runs", progress=False, **kwargs)
    assert isinstance(err.value, snnlth.SnnlthError)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert list(tmp_path.iterdir()) == []


def test_timesteps_must_be_known(tmp_path):
    with pytest.raises(snnlth.ConfigError, match="timesteps"):
        snnlth.find_ticket(nets.SeqNet(), _data(), _data(), epochs=1, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_dataset_without_targets_is_checked_batch_by_batch(tmp_path):
    """A Dataset that does not list its labels has them checked on the CPU as batches are cut (never a device
    assert on CUDA)."""

    class Items(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.x[i], int(self.y[i])

    x, y = _data(16)
    y[9] = 12
    with pytest.raises(snnlth.DataError, match="label 12 in a batch"):
        snnlth.find_ticket(nets.SeqNet(), Items(x, y), Items(*_data()), epochs=1, timesteps=2, device="cpu",
                           out=tmp_path / "run", progress=False, batch_size=4)
