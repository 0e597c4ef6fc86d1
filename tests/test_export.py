import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch

from snnlth import load_ticket
from snnlth import masks as M
from snnlth.api import search
from snnlth.cli import main
from snnlth.data import load_data
from snnlth.engine.evaluate import evaluate
from snnlth.rundir.store import load_blob
from tests.helpers import search_cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tests.helpers import make_fmnist

    root = tmp_path_factory.mktemp("exp")
    cfg = search_cfg(make_fmnist(root / "data"), rounds=2, prune_rate=0.6)
    return cfg, search(cfg, out=root / "run").run_dir


def test_export_load_roundtrip_is_exact(run, tmp_path, capsys):
    cfg, run_dir = run
    out = tmp_path / "t.safetensors"
    assert main(["export", str(run_dir), "--round", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "smaller" in printed and "effective ACs" in printed and "NeuroBench" in printed and "Horowitz" in printed
    ticket = load_ticket(out)
    state = load_blob(run_dir / "phases" / "round_02.pt")["model"]
    masks = M.unpack(load_blob(run_dir / "masks" / "round_02.pt"))
    assert all(torch.equal(ticket.model.state_dict()[k], v) for k, v in state.items())
    assert all(torch.equal(ticket.masks[n], masks[n]) for n in masks)
    level = json.loads((run_dir / "summary.json").read_text())["levels"][2]
    ticket.model.input_transform = torch.nn.Identity()  # evaluate() feeds normalised images
    data = load_data(cfg.data, torch.device("cpu"), data_dir=cfg.runtime.data_dir)
    acc = evaluate(ticket.model, data, int(ticket.metadata["timesteps"]))
    assert acc["accuracy"] == level["test_accuracy"]
    assert ticket.metadata["model"] == "lenet300" and float(ticket.metadata["sparsity_prunable"]) == \
        level["sparsity_prunable"]

    # size: mask bits + fp32 survivors + the other tensors, plus a small header
    expected = sum(math.ceil(m.numel() / 8) + int(m.sum()) * 4 for m in masks.values())
    expected += sum(v.numel() * v.element_size() for k, v in state.items() if k not in masks)
    assert expected <= out.stat().st_size <= expected * 1.03
    assert level["ticket_bytes"] == expected


def test_fp16_and_default_level(run, tmp_path):
    _, run_dir = run
    out = tmp_path / "h.safetensors"
    assert main(["export", str(run_dir), "--fp16", "--out", str(out)]) == 0  # default: the sparsest final level
    ticket = load_ticket(out)
    state = load_blob(run_dir / "phases" / "round_02.pt")["model"]
    assert torch.allclose(ticket.model.state_dict()["fc1.weight"], state["fc1.weight"], atol=1e-3)
    assert (ticket.model.state_dict()["fc1.weight"][~ticket.masks["fc1.weight"]] == 0).all()


def test_export_errors(run, tmp_path, capsys):
    _, run_dir = run
    assert main(["export", str(run_dir), "--round", "9", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--round 9 does not exist in this run; it has round 0 (0.00 %), round 1 (60.00 %)" in err
    assert not (tmp_path / "x").exists()
    assert main(["export", str(run_dir), "--sparsity", "0.3", "--out", str(tmp_path / "x")]) == 2
    assert "matches no level" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a finished search run" in capsys.readouterr().err
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(Exception, match="not a readable ticket file"):
        load_ticket(tmp_path / "bad.safetensors")


def _docs_ticket_example() -> str:
    """The block of docs/api.md that loads a ticket of an snnlth model and predicts on raw ``images``."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    return next(b for b in blocks if "snnlth.load_ticket(" in b and "predictions" in b)


def test_docs_ticket_example_verbatim_on_raw_images(tmp_path, monkeypatch):
    """The code of docs/api.md, unchanged, on raw test images in [0, 1] gives exactly the run's accuracy (a convnet:
    it has BatchNorm, whose eval-mode statistics and input normalisation a raw-image user cannot get wrong any more)."""
    from tests.helpers import make_fmnist

    data_dir = make_fmnist(tmp_path / "data")
    cfg = search_cfg(data_dir, model="convnet", rounds=1, epochs=3, timesteps=2)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=20, lr=0.1))
    res = search(cfg, out=tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(res.run_dir), "--out", "lenet.safetensors"]) == 0  # the file name the page uses
    data = load_data(cfg.data, torch.device("cpu"), data_dir=cfg.runtime.data_dir)
    scope = {"images": data.test_x.float() / 255}
    exec("import snnlth\n" + _docs_ticket_example(), scope)
    accuracy = 100.0 * int((scope["predictions"] == data.test_y).sum()) / len(data.test_y)
    level = res.summary["levels"][-1]
    assert accuracy == level["test_accuracy"] and accuracy > 30.0
    assert not scope["ticket"].model.training and scope["logits_seq"].shape == (2, 100, 10)
