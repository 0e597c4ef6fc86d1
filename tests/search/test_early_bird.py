import torch

from snnlth import masks as M
from snnlth.api import search
from snnlth.engine.loop import FitState
from snnlth.search.early_bird import EarlyBirdTracker
from tests.helpers import search_cfg


class StubCtx:
    """What the tracker needs of a SearchContext, with weights we choose per epoch."""

    def __init__(self, cfg):
        self.cfg, self.current, self.saved, self.events = cfg, None, {}, []

    def weights(self, model, names):
        return self.current

    def save_masks(self, key, masks):
        self.saved[key] = masks

    def load_masks(self, key):
        return self.saved.get(key)

    def event(self, msg):
        self.events.append(msg)


def _drive(tracker, ctx, weight_seq):
    state = FitState()
    for w in weight_seq:
        ctx.current = {"w": w}
        state.epoch += 1
        state.history.append({})
        if tracker.after_epoch(None, state):
            return state.epoch, state
    return None, state


def test_detects_at_the_right_epoch(fmnist_dir):
    cfg = search_cfg(fmnist_dir, target_sparsity=(0.5,), eb_window=3, eb_threshold=0.02)
    ctx = StubCtx(cfg)
    tracker = EarlyBirdTracker(ctx, ["w"])
    g = torch.Generator().manual_seed(0)
    moving = [torch.randn(1000, generator=g) for _ in range(3)]
    stable = torch.randn(1000, generator=g)
    # epochs 4.. keep the same ranking (tiny noise): the window [e4, e5, e6] is the first to agree
    seq = moving + [stable + 1e-6 * torch.randn(1000, generator=g) for _ in range(5)]
    stop, state = _drive(tracker, ctx, seq)
    assert stop == 6
    assert state.history[2]["eb_distance"][0] > 0.3 and state.history[5]["eb_distance"][0] < 0.02
    assert state.history[0]["eb_distance"] == [None]
    info = tracker.finish(stop)
    assert info == [{"target_sparsity": 0.5, "detection_epoch": 6, "converged": True}]
    assert torch.equal(ctx.saved["eb_0"]["w"], M.mask_at_sparsity({"w": seq[5]}, 0.5)["w"])


def test_never_converges_uses_the_last_mask(fmnist_dir):
    cfg = search_cfg(fmnist_dir, target_sparsity=(0.5, 0.9), eb_window=3)
    ctx = StubCtx(cfg)
    tracker = EarlyBirdTracker(ctx, ["w"])
    g = torch.Generator().manual_seed(1)
    seq = [torch.randn(500, generator=g) for _ in range(6)]
    stop, _ = _drive(tracker, ctx, seq)
    assert stop is None
    info = tracker.finish(6)
    assert [i["converged"] for i in info] == [False, False] and info[0]["detection_epoch"] == 6
    assert torch.equal(ctx.saved["eb_1"]["w"], M.mask_at_sparsity({"w": seq[-1]}, 0.9)["w"])
    assert any("no ticket" in e for e in ctx.events)


def test_tracker_state_roundtrip(fmnist_dir):
    cfg = search_cfg(fmnist_dir, target_sparsity=(0.5,), eb_window=3)
    ctx = StubCtx(cfg)
    a = EarlyBirdTracker(ctx, ["w"])
    _drive(a, ctx, [torch.randn(100) for _ in range(2)])
    b = EarlyBirdTracker(ctx, ["w"])
    b.load(a.state())
    assert all(torch.equal(x["w"], y["w"]) for x, y in zip(a.windows[0], b.windows[0]))


def test_eb_search_end_to_end(fmnist_dir, tmp_path):
    cfg = search_cfg(fmnist_dir, method="eb", target_sparsity=(0.5, 0.8), eb_window=2, eb_threshold=0.5, epochs=4)
    res = search(cfg, out=tmp_path / "r")
    s = res.summary
    assert [e["target_sparsity"] for e in s["eb"]] == [0.5, 0.8]
    assert all(e["converged"] and e["detection_epoch"] >= 2 for e in s["eb"])
    assert [round(lv["sparsity_prunable"], 6) for lv in s["levels"]] == [0.5, 0.8]
    assert all(lv["final"] and lv["timesteps"] == 3 for lv in s["levels"])
