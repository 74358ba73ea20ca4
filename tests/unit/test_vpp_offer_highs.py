"""The VPP's bidding MILP written straight into HiGHS is the Pyomo model it replaced, bit for bit.

``reference_*`` below is that Pyomo model (every datum a mutable Param, re-solved on Pyomo's persistent APPSI
HiGHS interface), kept here as the oracle: for a sequence of slots on one kept model, both give HiGHS the same
LP (costs, bounds, matrix, integrality: equal floats) and get the same column values and the same decision.
"""

from __future__ import annotations

import math

import numpy as np
import pyomo.environ as pyo
import pytest

from federates.common.solver import make_persistent_solver, solve_persistent
from federates.vpp.aggregation import MemberFlex, overflow_kw
from federates.vpp.ancillary_bidding import (
    _BASELINE_TIE_BREAK,
    BATTERY,
    KW_PER_MW,
    PRODUCTS,
    S_PER_H,
    UP_PRODUCTS,
    BiddingDecision,
    BiddingInput,
    OfferModel,
    _ask,
    _big_m,
    _offer_price,
    battery_margin_per_kwh,
    net_value_per_mw_h,
    physical_capacity_kw,
)

# --- the Pyomo reference ------------------------------------------------------------------------------

def reference_model(members: list[str]) -> pyo.ConcreteModel:
    m = pyo.ConcreteModel(name="vpp_ancillary_bidding")
    m.P = pyo.Set(initialize=PRODUCTS, ordered=True)
    m.UP = pyo.Set(initialize=UP_PRODUCTS, ordered=True)
    m.M = pyo.Set(initialize=members, ordered=True)
    mutable = dict(mutable=True, initialize=0.0, within=pyo.Reals)
    m.h = pyo.Param(**mutable)
    m.value, m.margin, m.big_m = (pyo.Param(m.P, **mutable) for _ in range(3))
    m.ask, m.limit = pyo.Param(m.M, m.P, **mutable), pyo.Param(m.M, m.P, **mutable)
    m.up_kw = pyo.Param(m.M, **mutable)
    for name in ("charge_margin", "discharge_margin", "export_margin", "battery_p_kw", "battery_kwh", "soc_low",
                 "soc_high", "eta_c", "eta_d", "surplus_kw", "deficit_kw", "min_offer_kw"):
        setattr(m, name, pyo.Param(**mutable))
    m.x_kw = pyo.Var(m.M, m.P, within=pyo.NonNegativeReals)
    m.y_kw = pyo.Var(m.P, within=pyo.NonNegativeReals)
    m.ch_kw, m.dis_kw, m.dis_x_kw = (pyo.Var(within=pyo.NonNegativeReals) for _ in range(3))
    m.offer_kw = pyo.Var(m.P, within=pyo.NonNegativeReals)
    m.offer_on = pyo.Var(m.P, within=pyo.Binary)

    def b(m):
        return m.dis_kw + m.dis_x_kw - m.ch_kw

    m.member_limit = pyo.Constraint(m.M, m.P, rule=lambda m, k, p: m.x_kw[k, p] <= m.limit[k, p])
    m.member_up = pyo.Constraint(m.M, rule=lambda m, k: sum(m.x_kw[k, p] for p in m.UP) <= m.up_kw[k])
    m.offer_def = pyo.Constraint(m.P, rule=lambda m, p: m.offer_kw[p] == sum(m.x_kw[k, p] for k in m.M) + m.y_kw[p])
    m.charge_from_surplus = pyo.Constraint(rule=lambda m: m.ch_kw <= m.surplus_kw)
    m.discharge_into_deficit = pyo.Constraint(rule=lambda m: m.dis_kw <= m.deficit_kw)
    m.battery_up_power = pyo.Constraint(rule=lambda m: sum(m.y_kw[p] for p in m.UP) + b(m) <= m.battery_p_kw)
    m.battery_up_energy = pyo.Constraint(
        rule=lambda m: (sum(m.y_kw[p] for p in m.UP) + b(m)) * m.h <= m.soc_low * m.eta_d)
    m.battery_down_power = pyo.Constraint(rule=lambda m: m.y_kw["reg_down"] - b(m) <= m.battery_p_kw)
    m.battery_down_energy = pyo.Constraint(
        rule=lambda m: (m.y_kw["reg_down"] - b(m)) * m.h * m.eta_c <= m.battery_kwh - m.soc_high)
    m.min_size = pyo.Constraint(m.P, rule=lambda m, p: m.offer_kw[p] >= m.min_offer_kw * m.offer_on[p])
    m.max_size = pyo.Constraint(m.P, rule=lambda m, p: m.offer_kw[p] <= m.big_m[p] * m.offer_on[p])

    def surplus(m):
        ancillary = sum(m.offer_kw[p] * m.value[p] for p in m.P) / KW_PER_MW * m.h
        asks = sum(m.x_kw[k, p] * m.ask[k, p] for k in m.M for p in m.P) / KW_PER_MW * m.h
        battery = sum(m.y_kw[p] * m.margin[p] for p in m.P) * m.h
        baseline = (m.ch_kw * m.charge_margin + m.dis_kw * m.discharge_margin + m.dis_x_kw * m.export_margin) * m.h
        return ancillary - asks + battery + baseline - _BASELINE_TIE_BREAK * (m.ch_kw + m.dis_kw + m.dis_x_kw)

    m.surplus = pyo.Objective(rule=surplus, sense=pyo.maximize)
    m.baseline = pyo.Expression(rule=b)
    return m


def reference_update(m: pyo.ConcreteModel, inp: BiddingInput) -> None:
    value = net_value_per_mw_h(inp)
    flex = {f.member: f for f in inp.members}
    m.h.set_value(inp.slot_s / S_PER_H)
    for p in PRODUCTS:
        m.value[p] = value[p]
    for k in m.M:
        f = flex.get(k)
        m.up_kw[k] = f.up_kw if f else 0.0
        for p in PRODUCTS:
            ask = _ask(f, p) if f else 0.0
            m.ask[k, p] = ask
            limit = (f.down_kw if p == "reg_down" else f.up_kw) if f else 0.0
            m.limit[k, p] = limit if f and value[p] > ask else 0.0
    g = battery_margin_per_kwh(inp)
    for p in PRODUCTS:
        m.margin[p] = g[p]
    for name, v in (("charge_margin", g["charge"]), ("discharge_margin", g["discharge"]),
                    ("export_margin", g["discharge_export"]), ("battery_p_kw", inp.battery_p_kw),
                    ("battery_kwh", inp.battery_kwh), ("soc_low", inp.battery_soc_kwh),
                    ("soc_high", inp.soc_high_kwh), ("eta_c", inp.eta_charge), ("eta_d", inp.eta_discharge),
                    ("surplus_kw", max(overflow_kw(inp.members), 0.0)),
                    ("deficit_kw", max(-overflow_kw(inp.members), 0.0)), ("min_offer_kw", inp.min_offer_kw)):
        getattr(m, name).set_value(v)
    for p, v in _big_m(inp).items():
        m.big_m[p] = v


def reference_extract(m: pyo.ConcreteModel, inp: BiddingInput) -> BiddingDecision:
    contributions: dict[str, dict[str, float]] = {p: {} for p in PRODUCTS}
    for k in m.M:
        for p in PRODUCTS:
            kw = float(pyo.value(m.x_kw[k, p]))
            if kw > 1e-9:
                contributions[p][k] = kw
    for p in PRODUCTS:
        kw = float(pyo.value(m.y_kw[p]))
        if kw > 1e-9:
            contributions[p][BATTERY] = kw
    offers = {p: math.fsum(contributions[p].values()) if pyo.value(m.offer_on[p]) > 0.5 else 0.0
              for p in PRODUCTS}
    contributions = {p: (c if offers[p] > 0 else {}) for p, c in contributions.items()}
    g = battery_margin_per_kwh(inp)
    prices = {p: _offer_price(contributions[p], {f.member: _ask(f, p) for f in inp.members}
                              | {BATTERY: max(-g[p], 0.0) * KW_PER_MW}, inp.price_forecast_per_mw_h.get(p, 0.0))
              for p in PRODUCTS}
    b = float(pyo.value(m.baseline))
    b = 0.0 if abs(b) < 1e-9 else b
    value = net_value_per_mw_h(inp)
    income = sum(offers[p] * value[p] for p in PRODUCTS) / KW_PER_MW * inp.slot_s / S_PER_H
    up, down = physical_capacity_kw(inp, b)
    return BiddingDecision(offers, prices, overflow_kw(inp.members) + b, up, down, contributions, income, b)


# --- the comparison -----------------------------------------------------------------------------------

def _lp_arrays(h) -> dict[str, list]:
    lp = h.getLp()
    a = lp.a_matrix_
    return {"cost": list(lp.col_cost_), "col_lower": list(lp.col_lower_), "col_upper": list(lp.col_upper_),
            "row_lower": list(lp.row_lower_), "row_upper": list(lp.row_upper_), "format": a.format_,
            "start": list(a.start_), "index": list(a.index_), "value": list(a.value_),
            "integrality": [int(t) for t in lp.integrality_], "sense": lp.sense_, "offset": lp.offset_}


def _bits(values) -> list[str]:
    return [float(v).hex() for v in values]   # equal floats, and -0.0 differs from 0.0


def _slots(rng: np.random.Generator, names: list[str], n: int, battery: bool) -> list[BiddingInput]:
    out = []
    for t in range(n):
        members = [MemberFlex(k, float(rng.choice([0.0, rng.uniform(0, 40)])), float(rng.uniform(0, 40)),
                              float(rng.uniform(0, 0.03)), float(rng.uniform(-20, 20)),
                              None if rng.random() < 0.5 else float(rng.uniform(0, 0.03)))
                   for k in names if rng.random() < 0.8]
        e_kwh = 100.0 if battery else 0.0
        soc = float(rng.uniform(0, e_kwh))
        out.append(BiddingInput(
            members, {p: float(rng.uniform(0, 40)) for p in PRODUCTS if rng.random() < 0.9},
            float(rng.choice([0.12, 0.3])), export_per_kwh=float(rng.choice([0.04, 0.08])),
            stored_value_per_kwh=0.18, battery_kwh=e_kwh, battery_p_kw=e_kwh / 2, battery_soc_kwh=soc,
            battery_soc_high_kwh=float(rng.uniform(soc, e_kwh)) if battery else None,
            eta_charge=0.95, eta_discharge=float(rng.choice([0.9, 1.0])),
            # the first slot without minimum size: data entries that are 0 when the model is built
            min_offer_kw=0.0 if t == 0 else float(rng.choice([0.0, 20.0, 100.0])),
            delivery_risk=0.05, penalty_multiplier=float(rng.choice([2.0, 10.0]))))
    return out


@pytest.mark.parametrize("battery", [True, False])
def test_highs_model_is_the_pyomo_model_slot_after_slot(battery):
    rng = np.random.default_rng(7 if battery else 8)
    names = [f"m{i}" for i in range(7)]
    if not battery:   # no battery and no member flexibility: bigM = 0 at build time as well
        first = BiddingInput([MemberFlex(k, 0.0, 0.0, 0.01, 1.0) for k in names], {"reg_up": 10.0}, 0.2,
                             min_offer_kw=0.0)
        slots = [first] + _slots(rng, names, 10, battery)
    else:
        slots = _slots(rng, names, 12, battery)
    ref, solver = reference_model(names), make_persistent_solver()
    kept = OfferModel(names)
    for inp in slots:
        reference_update(ref, inp)
        solve_persistent(ref, solver)
        want = reference_extract(ref, inp)
        got = kept.decide(inp)
        assert _lp_arrays(kept.highs) == _lp_arrays(solver._solver_model)
        assert _bits(kept.highs.getSolution().col_value) == _bits(solver._solver_model.getSolution().col_value)
        assert got == want
        assert [list(c.items()) for c in got.contributions_kw.values()] == [
            list(c.items()) for c in want.contributions_kw.values()]   # the order members are summed in
        assert _bits([got.expected_income, got.export_kw, got.battery_baseline_kw]) == _bits(
            [want.expected_income, want.export_kw, want.battery_baseline_kw])
