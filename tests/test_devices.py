"""Device-agnostic paths: run on the CPU everywhere and, where a GPU is visible, on CUDA too (with bf16 autocast)."""

import json

import pytest
import torch

from snnlth.api import train
from snnlth.config import ModelConfig, RuntimeConfig, TrainConfig, TrainRunConfig
from snnlth.data import load_data
from snnlth.engine.evaluate import evaluate
from snnlth.snn.neuron import lif_multistep, lif_reference

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_fused_lif_matches_reference_on_device(device):
    torch.manual_seed(0)
    x = (torch.randn(5, 64, 33, device=device) + 0.7).requires_grad_()
    g = torch.randn_like(x)
    s_ref, _ = lif_reference(x)
    (s_ref * g).sum().backward()
    grad_ref, x.grad = x.grad.clone(), None
    s = lif_multistep(x)
    (s * g).sum().backward()
    assert torch.equal(s, s_ref) and torch.allclose(x.grad, grad_ref, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp", [False, True])
def test_train_end_to_end_on_device(device, amp, fmnist_dir, tmp_path):
    cfg = TrainRunConfig(model=ModelConfig(model="convnet", timesteps=2),
                         train=TrainConfig(epochs=2, batch_size=40, amp=amp),
                         runtime=RuntimeConfig(data_dir=str(fmnist_dir), device=device))
    result = train(cfg, out=tmp_path / "run")
    assert result.summary["device"].startswith(device) and result.summary["epochs"] == 2
    assert all(p.device.type == device for p in result.model.parameters())
    # the reported accuracy is the returned model's, measured again independently on the same device
    data = load_data(cfg.data, torch.device(device), data_dir=str(fmnist_dir))
    again = evaluate(result.model, data, 2, amp=amp)["accuracy"]
    assert result.summary["test_accuracy"] == pytest.approx(again, abs=1e-9)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result.summary["train_seconds"] == pytest.approx(sum(r["train_seconds"] for r in rows))
    assert result.summary["train_seconds"] > 0
