import json

import torch

from snnlth import masks as M
from snnlth.api import search
from snnlth.engine.loop import FitState
from snnlth.methods.early_bird import EarlyBirdTracker, resolve_targets
from tests.helpers import search_cfg, search_kit


class StubStore:
    def __init__(self):
        self.saved = {}

    def save_masks(self, key, masks):
        self.saved[key] = masks

    def load_masks(self, key):
        return self.saved.get(key)


class StubCtx:
    """What the tracker needs of a MethodKit, with weights we choose per epoch."""

    def __init__(self, cfg):
        self.cfg, self.current, self.store, self.events = cfg, None, StubStore(), []

    def weights(self, model):
        return self.current

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


def _targets(cfg, n):
    return resolve_targets(cfg.search, {"w": torch.ones(n, dtype=torch.bool)})


def test_detects_at_the_right_epoch(fmnist_dir):
    cfg = search_cfg(fmnist_dir, target_sparsity=("0.5",), eb_window=3, eb_threshold=0.02)
    ctx = StubCtx(cfg)
    tracker = EarlyBirdTracker(ctx, _targets(cfg, 1000))
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
    assert info == [{"target_sparsity": 0.5, "imp_round": None, "survivors": 500, "detection_epoch": 6,
                     "converged": True}]
    assert all(isinstance(r["eb_seconds"], float) for r in state.history)
    assert torch.equal(ctx.store.saved["eb_0"]["w"], M.mask_at_sparsity({"w": seq[5]}, 0.5)["w"])


def test_never_converges_uses_the_last_mask(fmnist_dir):
    cfg = search_cfg(fmnist_dir, target_sparsity=("0.5", "0.9"), eb_window=3)
    ctx = StubCtx(cfg)
    tracker = EarlyBirdTracker(ctx, _targets(cfg, 500))
    g = torch.Generator().manual_seed(1)
    seq = [torch.randn(500, generator=g) for _ in range(6)]
    stop, _ = _drive(tracker, ctx, seq)
    assert stop is None
    info = tracker.finish(6)
    assert [i["converged"] for i in info] == [False, False] and info[0]["detection_epoch"] == 6
    assert torch.equal(ctx.store.saved["eb_1"]["w"], M.mask_at_sparsity({"w": seq[-1]}, 0.9)["w"])
    assert any("no ticket" in e for e in ctx.events)


def test_tracker_state_roundtrip(fmnist_dir):
    cfg = search_cfg(fmnist_dir, target_sparsity=("0.5",), eb_window=3)
    ctx = StubCtx(cfg)
    a = EarlyBirdTracker(ctx, _targets(cfg, 100))
    _drive(a, ctx, [torch.randn(100) for _ in range(2)])
    b = EarlyBirdTracker(ctx, _targets(cfg, 100))
    b.load(a.state())
    assert all(torch.equal(x["w"], y["w"]) for x, y in zip(a.windows[0], b.windows[0]))


def test_imp_targets_have_exactly_imp_survivor_counts(fmnist_dir):
    cfg = search_cfg(fmnist_dir, method="eb", target_sparsity=("imp", "0.5"), rounds=4, prune_rate=0.3)
    dense = {"a": torch.ones(333, dtype=torch.bool), "b": torch.ones(101, dtype=torch.bool)}
    targets = resolve_targets(cfg.search, dense)
    n, expected = 434, []
    for _ in range(4):  # IMP's own arithmetic, by hand: floor(0.3 * alive) go each round
        n -= int(0.3 * n)
        expected.append(n)
    assert expected == [304, 213, 150, 105]
    assert [t.keep for t in targets] == [304, 217, 213, 150, 105]  # 0.5 -> 434 - 217 = 217 survivors
    assert [t.imp_round for t in targets] == [1, None, 2, 3, 4]
    local = resolve_targets(search_cfg(fmnist_dir, method="eb", rounds=1, prune_rate=0.3, scope="local").search, dense)
    assert [t.keep for t in local] == [{"a": 333 - 99, "b": 101 - 30}]


def test_eb_tickets_fall_in_imp_columns(fmnist_dir, tmp_path):
    """EB at IMP's levels: each EB ticket has exactly as many survivors as the IMP ticket of that round."""
    imp = search(search_cfg(fmnist_dir, rounds=2, epochs=2), out=tmp_path / "imp")
    eb = search(search_cfg(fmnist_dir, method="eb", rounds=2, epochs=2), out=tmp_path / "eb")
    assert [lv["pruned_weights"] for lv in eb.summary["levels"]] == \
        [lv["pruned_weights"] for lv in imp.summary["levels"][1:]]
    assert [lv["sparsity_all"] for lv in eb.summary["levels"]] == \
        [lv["sparsity_all"] for lv in imp.summary["levels"][1:]]
    assert [e["imp_round"] for e in eb.summary["eb"]] == [1, 2]


def test_eb_search_end_to_end_at_the_papers_threshold(fmnist_dir, tmp_path):
    """tau = 0.02: with a fast-learning dense run (lr 0.5) the masks drift for a few epochs, then settle; the ticket is
    the magnitude mask of the detection epoch (reproduced here independently), retrained at full T."""
    import dataclasses

    from snnlth.engine.loop import FitSettings, Schedule, fit
    from snnlth.engine.optim import make_optimizer
    from snnlth.rundir.store import load_blob

    cfg = search_cfg(fmnist_dir, method="eb", target_sparsity=("0.5",), eb_window=3, eb_threshold=0.02, epochs=10)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=0.5))
    res = search(cfg, out=tmp_path / "r")
    s = res.summary
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    dense = [r for r in rows if r["phase"] == "eb_search"]
    dist = [r["eb_distance"][0] for r in dense]
    d = s["eb"][0]["detection_epoch"]
    assert s["eb"][0]["converged"] and d > 3 and len(dense) == d  # not the first full window; stopped at detection
    assert dist[:2] == [None, None] and all(x >= 0.02 for x in dist[2:d - 1]) and dist[d - 1] < 0.02
    kit = search_kit(cfg, tmp_path / "x")
    model = kit.model
    fit(model, make_optimizer(model, cfg.train), kit.data, FitSettings(cfg.train), Schedule(10, 3, stop_epoch=d))
    names = kit.sizes.names
    expected = M.mask_with_survivors(kit.weights(model), s["eb"][0]["survivors"])
    saved = M.unpack(load_blob(res.run_dir / "masks" / "eb_0.pt"))
    assert all(torch.equal(saved[n], expected[n]) for n in names)
    lv = s["levels"][0]
    total = sum(m.numel() for m in saved.values())
    assert lv["pruned_weights"] == total - s["eb"][0]["survivors"] == total // 2
    assert lv["final"] and lv["timesteps"] == 3 and lv["phase"] == "retrain_eb_0"
