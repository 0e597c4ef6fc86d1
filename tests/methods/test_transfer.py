"""The transferred ticket: IMP on the ANN twin, its masks and init trained as the SNN."""

import json

import pytest
import torch

import snnlth
from snnlth import masks as M
from snnlth.api import search
from snnlth.rundir.store import load_blob
from tests.adapters.nets import SeqNet
from tests.helpers import search_cfg


def test_transfer_trains_the_anns_tickets_as_the_snn(fmnist_dir, tmp_path):
    out = tmp_path / "run"
    res = search(search_cfg(fmnist_dir, method="transfer", rounds=2), out=out)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    s = res.summary
    assert [lv["round"] for lv in s["levels"]] == [0, 1, 2] and all(lv["final"] for lv in s["levels"])
    assert [a["round"] for a in s["transfer"]["ann_levels"]] == [0, 1, 2]
    # the ANN's rounds searched; each SNN ticket trained once from the same init with the ANN's masks
    assert {r["phase"] for r in rows} == {"round_00", "round_01", "round_02", "snn_00", "snn_01", "snn_02"}
    assert [lv["search_seconds"] for lv in s["levels"]] == [a["search_seconds"] for a in s["transfer"]["ann_levels"]]
    snn = search_cfg(fmnist_dir, rounds=2)  # the SNN built from the seed has the ANN twin's init
    torch.manual_seed(snn.train.seed)
    from snnlth.api import model_builder
    from snnlth.data.loader import load_data
    fresh = model_builder(snn, load_data(snn.data, torch.device("cpu")))().state_dict()
    init = load_blob(out / "init.pt")
    assert all(torch.equal(init[k], fresh[k]) for k in fresh)
    last = M.unpack(load_blob(out / "masks" / "round_02.pt"))
    trained = load_blob(out / "phases" / "snn_02.pt")["model"]
    assert all((trained[n][~m] == 0).all() for n, m in last.items())


def test_transfer_needs_an_snn_with_a_twin(fmnist_dir, tmp_path):
    import dataclasses

    cfg = search_cfg(fmnist_dir, method="transfer")
    with pytest.raises(snnlth.ConfigError, match="use --neuron lif"):
        search(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, neuron="relu")), out=tmp_path / "a")
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    with pytest.raises(snnlth.ConfigError, match="ANN twin"):
        snnlth.find_ticket(SeqNet(), (x, y), (x, y), method="transfer", epochs=1, timesteps=2, device="cpu",
                           out=tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
