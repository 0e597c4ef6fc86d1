import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnlth import masks as M


def _weights(seed: int, shapes=((4, 3), (5,), (2, 2, 3))) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {f"l{i}.weight": torch.randn(s, generator=g) for i, s in enumerate(shapes)}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), rate=st.floats(0.0, 0.95), rounds=st.integers(1, 4),
       scope=st.sampled_from(["global", "local"]))
def test_exact_counts_and_monotone_masks(seed, rate, rounds, scope):
    w = _weights(seed)
    m = M.ones_like(w)
    for _ in range(rounds):
        new = M.magnitude_prune(w, m, rate, scope)
        if scope == "global":
            assert M.count_alive(new) == M.count_alive(m) - math.floor(rate * M.count_alive(m))
        else:
            for n in m:
                alive = int(m[n].sum())
                assert int(new[n].sum()) == alive - math.floor(rate * alive)
        assert all(not (new[n] & ~m[n]).any() for n in m)  # nothing revived
        m = new


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), rate=st.floats(0.05, 0.9))
def test_global_prunes_the_smallest_alive(seed, rate):
    w = _weights(seed)
    new = M.magnitude_prune(w, M.ones_like(w), rate)
    kept = torch.cat([w[n].abs()[new[n]] for n in w])
    gone = torch.cat([w[n].abs()[~new[n]] for n in w])
    if len(gone) and len(kept):
        assert gone.max() <= kept.min()


def test_ties_broken_by_position_and_exact():
    w = {"a": torch.ones(6), "b": torch.ones(4)}  # all tied
    m = M.magnitude_prune(w, M.ones_like(w), 0.5)
    assert M.count_alive(m) == 5
    assert m["a"].tolist() == [False] * 5 + [True] and m["b"].all()  # first five positions go first
    assert all(torch.equal(m[n], M.magnitude_prune(w, M.ones_like(w), 0.5)[n]) for n in m)


def test_pruned_weight_regrown_is_still_pruned_by_mask():
    w = {"a": torch.tensor([0.1, 5.0, 3.0, 0.2])}
    m = M.magnitude_prune(w, M.ones_like(w), 0.5)
    assert m["a"].tolist() == [False, True, True, False]
    w2 = {"a": torch.tensor([9.0, 0.01, 3.0, 9.0])}  # pruned entries grew large: still dead
    m2 = M.magnitude_prune(w2, m, 0.5)
    assert m2["a"].tolist() == [False, False, True, False]


def test_local_vs_global_differ():
    w = {"small": torch.full((10,), 0.1) + torch.arange(10) * 1e-3, "big": torch.full((10,), 5.0) + torch.arange(10)}
    g = M.magnitude_prune(w, M.ones_like(w), 0.5, "global")
    loc = M.magnitude_prune(w, M.ones_like(w), 0.5, "local")
    assert int(g["small"].sum()) == 0 and int(g["big"].sum()) == 10
    assert int(loc["small"].sum()) == 5 and int(loc["big"].sum()) == 5


def test_sparsity_accounting_and_hamming():
    m = {"a": torch.tensor([True, False, False, True]), "b": torch.tensor([True, True])}
    assert M.sparsity(m) == 2 / 6
    assert M.sparsity_all(m, num_parameters=10) == 2 / 10
    assert M.layer_sparsity(m) == {"a": 0.5, "b": 0.0}
    m2 = {"a": torch.tensor([True, True, False, True]), "b": torch.tensor([False, True])}
    assert M.hamming(m, m2) == 2 / 6 and M.hamming(m, m) == 0.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), rate=st.floats(0.0, 0.9), scope=st.sampled_from(["global", "local"]))
def test_random_prune_counts(seed, rate, scope):
    m = M.ones_like(_weights(0))
    g = torch.Generator().manual_seed(seed)
    r = M.random_prune(m, rate, g, scope)
    if scope == "global":
        assert M.count_alive(r) == M.count_total(m) - math.floor(rate * M.count_total(m))
    else:
        assert all(int(r[n].sum()) == m[n].numel() - math.floor(rate * m[n].numel()) for n in m)


def test_random_like_keeps_layer_counts_and_is_seeded():
    w = _weights(3)
    ref = M.magnitude_prune(w, M.ones_like(w), 0.6)
    a = M.random_like(ref, torch.Generator().manual_seed(1))
    b = M.random_like(ref, torch.Generator().manual_seed(1))
    assert all(int(a[n].sum()) == int(ref[n].sum()) for n in ref)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_mask_at_sparsity_and_apply():
    w = _weights(5)
    m = M.mask_at_sparsity(w, 0.5)
    assert M.count_total(m) - M.count_alive(m) == math.floor(0.5 * M.count_total(m))
    M.apply_(w, m)
    assert all((w[n][~m[n]] == 0).all() for n in w)


def test_pack_roundtrip_is_compact():
    w = _weights(7, shapes=((33, 17), (5, 3, 3, 3)))
    m = M.magnitude_prune(w, M.ones_like(w), 0.7)
    packed = M.pack(m)
    assert packed["l0.weight"].numel() == math.ceil(33 * 17 / 8)
    back = M.unpack(packed)
    assert list(back) == list(m) and all(torch.equal(back[n], m[n]) for n in m)


def test_nan_or_inf_weights_are_never_ranked():
    import pytest

    from snnlth.errors import NumericalError

    w = _weights(0)
    w["l2.weight"][0, 1, 2] = float("nan")
    with pytest.raises(NumericalError, match=r"^l2\.weight holds 1 NaN/inf value$"):
        M.magnitude_prune(w, M.ones_like(w), 0.5)
    w["l2.weight"][0, 1, 2] = float("inf")
    w["l0.weight"][0, 0] = float("-inf")
    with pytest.raises(NumericalError, match=r"^l0\.weight holds 1 NaN/inf value$"):
        M.mask_at_sparsity(w, 0.5, "local")


def test_keep_largest_keeps_exactly_the_largest_alive_weights():
    g = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(6, 5, generator=g), "b": torch.randn(40, generator=g)}
    alive = {n: torch.rand(w.shape, generator=g) > 0.3 for n, w in weights.items()}
    out = M.keep_largest(weights, alive, 12)
    assert M.count_alive(out) == 12 and all(not (out[n] & ~alive[n]).any() for n in out)
    kept = torch.cat([weights[n][out[n]].abs() for n in out])
    dropped = torch.cat([weights[n][alive[n] & ~out[n]].abs() for n in out])
    assert kept.min() > dropped.max()
    local = M.keep_largest(weights, alive, {"a": 3, "b": 10})
    assert {n: int(m.sum()) for n, m in local.items()} == {"a": 3, "b": 10}
    for wrong in (M.count_alive(alive) + 1, {"a": 3, "b": int(alive["b"].sum()) + 1}):
        try:
            M.keep_largest(weights, alive, wrong)
        except ValueError as exc:
            assert "alive" in str(exc)
        else:
            raise AssertionError("kept more weights than alive")
