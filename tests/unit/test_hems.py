"""HEMS LP: a hand-sized known optimum, the compiled fast path against Pyomo, failures."""

from __future__ import annotations

import numpy as np
import pytest

from federates.common.errors import SolverError
from federates.prosumer.hems import (
    CYCLE_COST_PER_KWH,
    BatteryParams,
    CompiledHems,
    HemsData,
    _Template,
    grid_only_plan,
    solve_hems,
)


def _data(
    net_load,
    retail,
    *,
    battery=None,
    buyback=0.0,
    slot_h=1.0,
    soc0=0.0,
    flex=None,
    award_up=None,
    value0=0.0,
    terminal=0.0,
    demand_charge=0.0,
):
    h = len(net_load)
    battery = battery or BatteryParams()
    fmax, new, rmax, rem0 = flex if flex is not None else (np.zeros((0, h)),) * 3 + (np.zeros(0),)
    reward = np.zeros(h)
    reward[0] = value0
    return HemsData(
        slot_h=slot_h,
        battery=battery,
        net_load_kw=np.asarray(net_load, float),
        retail_price_per_kwh=np.asarray(retail, float),
        buyback_price_per_kwh=np.full(h, buyback),
        soc_init_kwh=soc0,
        soc_floor_kwh=np.full(h, battery.soc_min_kwh),
        reserve_up_award_kw=np.zeros(h) if award_up is None else np.asarray(award_up, float),
        reserve_down_award_kw=np.zeros(h),
        reserve_value_per_kw=reward,
        flex_max_kw=fmax,
        flex_new_kwh=new,
        flex_rem_max_kwh=rmax,
        flex_rem_init_kwh=rem0,
        terminal_value_per_kwh=terminal,
        demand_charge_per_kw=demand_charge,
    )


def _cost(d: HemsData, p) -> float:
    dt = d.slot_h
    return float(
        np.sum(
            dt
            * (
                d.retail_price_per_kwh * p.import_kw
                - d.buyback_price_per_kwh * p.export_kw
                + CYCLE_COST_PER_KWH * (p.charge_kw + p.discharge_kw)
            )
        )
        - np.sum(d.reserve_value_per_kw * (p.reserve_up_kw + p.reserve_down_kw))
        - d.terminal_value_per_kwh * p.soc_kwh[-1]
    )


BAT = BatteryParams(
    capacity_kwh=4.0, p_max_kw=2.0, eta_charge=0.9, eta_discharge=0.9, soc_min_kwh=0.0, soc_max_kwh=4.0
)


def _arbitrage():
    # 4 one-hour slots, 2 kW load, cheap-cheap-dear-less-dear: charge at p_max in slots 0, 1 (SOC 3.6 kWh),
    # discharge 2 kW in slot 2 (2/0.9 kWh), the remaining 3.6 - 2/0.9 kWh gives 0.9 x that in slot 3.
    return _data([2, 2, 2, 2], [0.1, 0.1, 0.5, 0.4], battery=BAT)


@pytest.mark.parametrize("path", ["pyomo", "compiled"])
def test_hand_sized_arbitrage_is_solved_exactly(path):
    d = _arbitrage()
    plan = solve_hems(d) if path == "pyomo" else CompiledHems(d).solve(d)
    last_kw = (3.6 - 2 / 0.9) * 0.9
    np.testing.assert_allclose(plan.charge_kw, [2, 2, 0, 0], atol=1e-7)
    np.testing.assert_allclose(plan.discharge_kw, [0, 0, 2, last_kw], atol=1e-7)
    np.testing.assert_allclose(plan.import_kw, [4, 4, 0, 2 - last_kw], atol=1e-7)
    np.testing.assert_allclose(plan.soc_kwh, [1.8, 3.6, 3.6 - 2 / 0.9, 0.0], atol=1e-7)
    # importing in the bid slot: one more kWh there costs the retail price (plus nothing else)
    assert plan.marginal_value_per_kwh == pytest.approx(0.1, abs=1e-6)
    assert _cost(d, plan) == pytest.approx(
        0.1 * 8 + 0.4 * (2 - last_kw) + CYCLE_COST_PER_KWH * (4 + 2 + last_kw)
    )


def test_marginal_value_is_buyback_when_exporting():
    d = _data([-3, 1], [0.3, 0.3], buyback=0.05)
    plan = CompiledHems(d).solve(d)
    assert plan.export_kw[0] == pytest.approx(3)
    assert plan.marginal_value_per_kwh == pytest.approx(0.05, abs=1e-9)


def _flex_case():
    # one flexible load: 3 kWh in slots 1..2 (2 kW max), cheap in slot 2 -> 2 kW in slot 2, 1 kW in slot 1
    fmax = np.array([[0, 2, 2, 0]], float)
    new = np.array([[0, 3, 0, 0]], float)
    rmax = np.array([[0, 2, 0, 0]], float)
    return _data([0.5, 0.5, 0.5, 0.5], [0.3, 0.3, 0.1, 0.3], flex=(fmax, new, rmax, np.zeros(1)))


def test_flexible_load_delivered_inside_window_at_cheapest_time():
    d = _flex_case()
    plan = CompiledHems(d).solve(d)
    np.testing.assert_allclose(plan.flex_kw, [[0, 1, 2, 0]], atol=1e-7)
    fallback = grid_only_plan(d)  # as early as possible, battery idle
    np.testing.assert_allclose(fallback.flex_kw, [[0, 2, 1, 0]])
    np.testing.assert_allclose(fallback.import_kw, [0.5, 2.5, 1.5, 0.5])
    assert fallback.fallback and not np.any(fallback.charge_kw)


def test_reserve_award_is_held_around_the_plan():
    # award 3 kW up in slot 0: with p_max 2 the battery must charge >= 1 kW then (dis - ch + rup <= p_max)
    d = _data([1, 1], [0.2, 0.2], battery=BAT, soc0=2.0, award_up=[3, 0])
    plan = CompiledHems(d).solve(d)
    assert plan.reserve_up_kw[0] >= 3 - 1e-7
    assert plan.discharge_kw[0] - plan.charge_kw[0] + plan.reserve_up_kw[0] <= BAT.p_max_kw + 1e-7
    assert plan.shortfall_kw.max() == pytest.approx(0, abs=1e-7)


def test_compiled_updates_equal_a_fresh_pyomo_compile():
    rng = np.random.default_rng(3)
    h = 8
    fmax = np.array([np.r_[np.zeros(3), np.full(4, 3.0), [0]]])
    new = np.array([np.r_[np.zeros(3), [5.0], np.zeros(4)]])
    rmax = np.array([np.r_[np.zeros(3), [4.5, 3.0, 1.5], np.zeros(2)]])
    first = _data(
        rng.normal(0, 2, h),
        rng.uniform(0.1, 0.4, h),
        battery=BAT,
        soc0=1.0,
        flex=(fmax, new, rmax, np.zeros(1)),
        demand_charge=0.5,
    )
    second = _data(
        rng.normal(0, 2, h),
        rng.uniform(0.1, 0.4, h),
        battery=BAT,
        soc0=2.5,
        buyback=0.04,
        flex=(fmax, new * 0.8, rmax, np.array([0.0])),
        award_up=rng.uniform(0, 1, h),
        value0=0.02,
        terminal=0.08,
        demand_charge=0.5,
    )
    second.peak_so_far_kw = 1.5
    fast = CompiledHems(first)
    fast.solve(first)
    plan = fast.solve(second)  # warm re-solve after a parameter update
    lp, ref = fast.highs.getLp(), _Template(second)
    np.testing.assert_allclose(lp.row_lower_, ref.row_lower)
    np.testing.assert_allclose(lp.row_upper_, ref.row_upper)
    np.testing.assert_allclose(lp.col_lower_, ref.col_lower)
    np.testing.assert_allclose(lp.col_upper_, ref.col_upper)
    np.testing.assert_allclose(lp.col_cost_, ref.cost)
    slow = solve_hems(second)
    assert _cost(second, plan) + 0.5 * plan.import_kw.max() == pytest.approx(
        _cost(second, slow) + 0.5 * slow.import_kw.max(), abs=1e-7
    )
    assert plan.marginal_value_per_kwh == pytest.approx(slow.marginal_value_per_kwh, abs=1e-7)


def test_solver_failure_raises_solver_error():
    d = _arbitrage()
    with pytest.raises(SolverError, match="HEMS model \\(p1\\)"):
        CompiledHems(d, {"simplex_iteration_limit": 0}).solve(d, context="p1")


def test_battery_sizes_share_one_template_with_their_own_bounds():
    """A bigger battery with the same efficiencies reuses the compiled matrix; its LP (bounds included) is
    exactly what a fresh compile of its own model gives, and a battery-less prosumer's too."""
    from federates.prosumer.hems import _TEMPLATES

    rng = np.random.default_rng(5)
    big = BatteryParams(capacity_kwh=13.5, p_max_kw=5.0, eta_charge=0.9, eta_discharge=0.9, soc_min_kwh=1.35,
                        soc_max_kwh=12.8)
    small_d = _data(rng.normal(0, 2, 6), rng.uniform(0.1, 0.4, 6), battery=BAT, soc0=1.0)
    big_d = _data(rng.normal(0, 2, 6), rng.uniform(0.1, 0.4, 6), battery=big, soc0=6.0, terminal=0.1)
    small = CompiledHems(small_d)
    n_templates = len(_TEMPLATES)
    fast = CompiledHems(big_d)
    assert len(_TEMPLATES) == n_templates and fast.tpl is small.tpl
    for d in (big_d, _data(rng.normal(0, 2, 6), rng.uniform(0.1, 0.4, 6))):
        solver = CompiledHems(d)
        plan = solver.solve(d)
        lp, ref = solver.highs.getLp(), _Template(d)
        for got, want in ((lp.row_lower_, ref.row_lower), (lp.row_upper_, ref.row_upper),
                          (lp.col_lower_, ref.col_lower), (lp.col_upper_, ref.col_upper), (lp.col_cost_, ref.cost),
                          (lp.a_matrix_.value_, ref.a_value)):
            np.testing.assert_array_equal(np.asarray(got), want)
        slow = solve_hems(d)
        assert _cost(d, plan) == pytest.approx(_cost(d, slow), abs=1e-7)
