"""The shortcuts of runner.results give what the straightforward code gives, to the last bit (sign of zero too):
``wide`` against ``DataFrame.pivot``, ``local_consumption`` with every unit its own boundary against the
boundary sums done with ``np.bincount``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runner.results import _GRID, _PV, local_consumption, periodic_local_consumption, wide


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def pivoted(steps: pd.DataFrame, column: str) -> pd.DataFrame:
    return steps.pivot(index="time", columns="prosumer", values=column).sort_index().fillna(0.0)


def steps_table() -> pd.DataFrame:
    """Rows out of order, a prosumer missing at one time, NaN and -0.0 values, an integer column."""
    return pd.DataFrame({"time": [600.0, 0.0, 300.0, 0.0, 300.0, 600.0, 0.0],
                         "prosumer": pd.array(["b", "b", "b", "a", "a", "a", "c"], dtype="str"),
                         "pv_kw": [1.5, -0.0, np.nan, 2.0, 0.25, 3.0, 7.0],
                         "count": [1, 2, 3, 4, 5, 6, 7]})


@pytest.mark.parametrize("column", ["pv_kw", "count"])
def test_wide_is_the_pivot(column):
    steps = steps_table()
    got, want = wide(steps, column), pivoted(steps, column)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert same_bits(got.to_numpy(), want.to_numpy())


def test_wide_of_a_duplicated_row_fails_as_the_pivot_does():
    steps = pd.concat([steps_table(), steps_table().iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate"):
        wide(steps, "pv_kw")


def reference_local_consumption(production_kw, demand_kw, battery_kw, group, start_kwh, eta_charge, eta_discharge,
                                start_local_share=0.0, dt_h=300 / 3600):
    """runner.results.local_consumption as first written: every boundary summed with np.bincount."""
    group = np.asarray(group, dtype=int)
    n, n_groups = len(group), int(group.max()) + 1
    start, before = np.asarray(start_kwh, dtype=float) * np.ones(n), np.asarray(start_local_share) * np.ones(n)
    stored = np.column_stack([np.zeros(n), start * before, start * (1.0 - before)])
    eta_c, eta_d = np.asarray(eta_charge, dtype=float) * np.ones(n), np.asarray(eta_discharge) * np.ones(n)
    consumed, charged = np.zeros((n_groups, 3)), np.zeros((n, 3))

    def ratio(num, den):
        return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 1e-12)

    def per_group(x):
        return np.stack([np.bincount(group, weights=x[:, k], minlength=n_groups) for k in range(x.shape[1])], 1)

    def col(x):
        return x[:, None]

    for p_kw, d_kw, b_kw in zip(production_kw, demand_kw, battery_kw, strict=True):
        charge, discharge = np.maximum(-b_kw, 0.0), np.maximum(b_kw, 0.0)
        share = ratio(stored, stored.sum(axis=1, keepdims=True))
        p_to_d = np.minimum(p_kw, d_kw)
        b_to_d = np.minimum(discharge, d_kw - p_to_d)
        p_to_c = np.minimum(p_kw - p_to_d, charge)
        need_d, need_c = d_kw - p_to_d - b_to_d, charge - p_to_c
        spare_p, spare_b = p_kw - p_to_d - p_to_c, discharge - b_to_d
        sp, nd, nc = (per_group(col(x))[:, 0] for x in (spare_p, need_d, need_c))
        sb_mix = per_group(col(spare_b) * share)
        sb = sb_mix.sum(axis=1)
        mix_b = ratio(sb_mix, col(sb))
        sp_to_d = np.minimum(sp, nd)
        sb_to_d = np.minimum(sb, nd - sp_to_d)
        sp_to_c = np.minimum(sp - sp_to_d, nc)
        sb_to_c = np.minimum(sb - sb_to_d, nc - sp_to_c)
        consumed += (per_group(col(p_to_d) * _PV + col(b_to_d) * share) + col(sp_to_d) * _PV
                     + col(sb_to_d) * mix_b) * dt_h
        to_c = col(sp_to_c) * _PV + col(sb_to_c) * mix_b + col(nc - sp_to_c - sb_to_c) * _GRID
        mix_c = ratio(to_c, col(nc))[group]
        added = (col(p_to_c) * _PV + col(need_c) * mix_c) * col(eta_c) * dt_h
        charged += added
        stored = np.maximum(stored - col(discharge / eta_d * dt_h) * share + added, 0.0)
    return consumed, stored, charged


def fleet(seed: int, steps: int = 36, units: int = 7):
    """Production, demand and battery power with zeros, negative zeros and every sign of battery power."""
    rng = np.random.default_rng(seed)
    p = np.where(rng.random((steps, units)) < 0.3, 0.0, rng.random((steps, units)) * 5)
    d = rng.random((steps, units)) * 3
    b = np.where(rng.random((steps, units)) < 0.2, -0.0, rng.normal(size=(steps, units)) * 2)
    return p, d, b, rng.random(units) * 10, 0.9 + rng.random(units) * 0.1, 0.9 + rng.random(units) * 0.1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_unit_its_own_boundary_gives_what_the_boundary_sums_give(seed):
    p, d, b, start, eta_c, eta_d = fleet(seed)
    alone = np.arange(p.shape[1])
    for share in (0.0, 0.4):
        got = local_consumption(p, d, b, alone, start, eta_c, eta_d, start_local_share=share)
        want = reference_local_consumption(p, d, b, alone, start, eta_c, eta_d, start_local_share=share)
        assert all(same_bits(g, w) for g, w in zip((got.consumed_kwh, got.stored_kwh, got.charged_kwh), want,
                                                   strict=True))


@pytest.mark.parametrize("groups", [[0, 1, 0, 2, 1, 0, 2], [6, 0, 1, 2, 3, 4, 5]])  # communities; one each, shuffled
def test_communities_give_what_the_boundary_sums_give(groups):
    p, d, b, start, eta_c, eta_d = fleet(4)
    groups = np.array(groups)
    got = periodic_local_consumption(p, d, b, groups, start, eta_c, eta_d)
    assert got.consumed_kwh.shape == (groups.max() + 1, 3)
    got = local_consumption(p, d, b, groups, start, eta_c, eta_d, start_local_share=0.25)
    want = reference_local_consumption(p, d, b, groups, start, eta_c, eta_d, start_local_share=0.25)
    assert all(same_bits(g, w) for g, w in zip((got.consumed_kwh, got.stored_kwh, got.charged_kwh), want,
                                               strict=True))
