"""Every registered model goes through a one-round IMP search (CPU, and CUDA where a GPU is visible)."""

import dataclasses

import pytest
import torch

from snnlth import masks as M
from snnlth.api import search
from snnlth.models import list_models
from snnlth.rundir.store import load_blob
from tests.helpers import search_cfg

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", list_models())
def test_imp_round_on_every_model(model, device, fmnist_dir, tmp_path):
    cfg = search_cfg(fmnist_dir, model=model, rounds=1, timesteps=2, epochs=1, prune_rate=0.5)
    big = model in ("vgg16", "resnet19")  # a few images only: this checks plumbing, not learning
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=10 if big else 50),
                              runtime=dataclasses.replace(cfg.runtime, device=device),
                              data=dataclasses.replace(cfg.data, train_subset=20 if big else None,
                                                       test_subset=10 if big else None))
    res = search(cfg, out=tmp_path / "r")
    lv = res.summary["levels"]
    assert [x["round"] for x in lv] == [0, 1] and lv[1]["sparsity_prunable"] == pytest.approx(0.5, abs=1e-6)
    masks = M.unpack(load_blob(res.run_dir / "masks" / "round_01.pt"))
    state = load_blob(res.run_dir / "phases" / "round_01.pt")["model"]
    assert all((state[n][~masks[n]] == 0).all() for n in masks)
    assert res.summary["device"].startswith(device)
