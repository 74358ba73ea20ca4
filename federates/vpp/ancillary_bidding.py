"""Layer II: a community VPP decides its ancillary offers to the ISO for the next 15-minute slot.

A small MILP on HiGHS chooses how much of each member's flexibility (and of an optional community battery)
goes into each product - reg_up, reg_down, spin - and where the battery sits during the slot (its baseline
power, which sets the energy export). It maximises the members' expected surplus for the slot:

    sum_p  offer_kw[p] / 1000 * value[p] * h  -  sum_{m,p} x[m, p] * ask[m] * h
    with value[p] = forecast[p] * (1 - delivery_risk * (1 + penalty_multiplier))   ($/MW-h)

``value`` is the expected clearing price net of expected non-delivery: a fraction ``delivery_risk`` of the
award is not delivered, which loses its performance-adjusted payment (1x) and costs the penalty
(``penalty_multiplier`` x), as settled by :mod:`federates.iso.settlement`. ``ask[m]`` is the member's
``price_per_kwh`` ($/kW-h of held capacity). A member only enters a product whose ``value`` exceeds its
ask (revenue is shared pro rata, not pay-as-bid, so nobody is paid below their ask in expectation).

Sign convention: power is positive when INJECTED INTO THE NETWORK. The battery baseline ``b = b_dis - b_ch``
is positive when discharging; the community's energy export is ``overflow_kw + b``. Energy left in the
battery is valued at the energy price, so the battery moves its baseline only to open headroom, never to
empty itself for one slot's energy revenue.

Offer price rule (one price per product): the capacity-weighted ask of the contributors, in $/MW-h
(the battery asks 0), floored at 0 and never above the forecast, so that it clears if the forecast holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyomo.environ as pyo

from federates.common.errors import ConfigError
from federates.common.solver import solve
from federates.vpp.aggregation import MemberFlex, overflow_kw, validate_members

PRODUCTS = ("reg_up", "reg_down", "spin")
UP_PRODUCTS = ("reg_up", "spin")
BATTERY = "community_battery"
KW_PER_MW = 1000.0
S_PER_H = 3600.0
_BASELINE_TIE_BREAK = 1e-6  # $/kW: prefer a zero battery baseline when it does not change the surplus


@dataclass(frozen=True)
class BiddingInput:
    """Everything the VPP knows when it bids for one slot (see the module docstring for units)."""

    members: Sequence[MemberFlex]
    price_forecast_per_mw_h: Mapping[str, float]
    energy_price_per_kwh: float
    battery_kwh: float = 0.0
    battery_p_kw: float = 0.0
    battery_soc_kwh: float = 0.0
    min_offer_kw: float = 100.0
    delivery_risk: float = 0.05
    penalty_multiplier: float = 2.0
    slot_s: int = 900


@dataclass
class BiddingDecision:
    """The VPP's offers for one slot.

    ``contributions_kw[product][member]`` says who backs each offer (the battery as :data:`BATTERY`);
    ``expected_income`` is the expected ancillary income net of expected penalty, $ for the slot, at the
    forecast prices; ``up_capacity_kw`` / ``down_capacity_kw`` are what members + battery can physically
    deliver in each direction around the chosen baseline.
    """

    offers_kw: dict[str, float]
    offer_price_per_mw_h: dict[str, float]
    export_kw: float
    up_capacity_kw: float
    down_capacity_kw: float
    contributions_kw: dict[str, dict[str, float]]
    expected_income: float


def decide_offers(inp: BiddingInput) -> BiddingDecision:
    """Build, solve and read the bidding model."""
    model = build_bidding_model(inp)
    solve(model, context=f"VPP ancillary bidding ({len(inp.members)} members)")
    return extract_bidding(model, inp)


def net_value_per_mw_h(inp: BiddingInput) -> dict[str, float]:
    """Expected value of 1 MW held for 1 h per product: forecast * (1 - risk * (1 + multiplier))."""
    factor = 1.0 - inp.delivery_risk * (1.0 + inp.penalty_multiplier)
    return {p: float(inp.price_forecast_per_mw_h.get(p, 0.0)) * factor for p in PRODUCTS}


def build_bidding_model(inp: BiddingInput) -> pyo.ConcreteModel:
    """The bidding MILP (``inp`` is validated and never mutated)."""
    _validate(inp)
    value = net_value_per_mw_h(inp)
    m = pyo.ConcreteModel(name="vpp_ancillary_bidding")
    m.P = pyo.Set(initialize=PRODUCTS, ordered=True)
    m.UP = pyo.Set(initialize=UP_PRODUCTS, ordered=True)
    m.M = pyo.Set(initialize=[f.member for f in inp.members], ordered=True)
    eligible = [(f.member, p) for f in inp.members for p in PRODUCTS
                if value[p] > f.price_per_kwh * KW_PER_MW and _member_limit(f, p) > 0]
    m.MP = pyo.Set(initialize=eligible, dimen=2, ordered=True)
    flex = {f.member: f for f in inp.members}
    m.h = pyo.Param(initialize=inp.slot_s / S_PER_H)
    m.value = pyo.Param(m.P, initialize=value)
    m.ask = pyo.Param(m.M, initialize={f.member: f.price_per_kwh * KW_PER_MW for f in inp.members})
    m.up_kw = pyo.Param(m.M, initialize={f.member: f.up_kw for f in inp.members})
    m.battery_p_kw = pyo.Param(initialize=inp.battery_p_kw)
    m.battery_kwh = pyo.Param(initialize=inp.battery_kwh)
    m.soc_kwh = pyo.Param(initialize=inp.battery_soc_kwh)
    m.min_offer_kw = pyo.Param(initialize=inp.min_offer_kw)
    m.overflow_kw = pyo.Param(initialize=overflow_kw(inp.members))
    m.energy_price = pyo.Param(initialize=inp.energy_price_per_kwh)

    m.x_kw = pyo.Var(m.MP, bounds=lambda _m, k, p: (0.0, _member_limit(flex[k], p)))
    m.battery_kw = pyo.Var(m.P, within=pyo.NonNegativeReals)
    m.b_dis_kw = pyo.Var(bounds=(0.0, inp.battery_p_kw))
    m.b_ch_kw = pyo.Var(bounds=(0.0, inp.battery_p_kw))
    m.offer_kw = pyo.Var(m.P, within=pyo.NonNegativeReals)
    m.offer_on = pyo.Var(m.P, within=pyo.Binary)
    big_m = _big_m(inp)
    m.big_m = pyo.Param(m.P, initialize=big_m)

    m.offer_def = pyo.Constraint(m.P, rule=offer_def_rule)
    m.member_up = pyo.Constraint(m.M, rule=member_up_rule)
    m.battery_up_power = pyo.Constraint(rule=battery_up_power_rule)
    m.battery_up_energy = pyo.Constraint(rule=battery_up_energy_rule)
    m.battery_down_power = pyo.Constraint(rule=battery_down_power_rule)
    m.battery_down_energy = pyo.Constraint(rule=battery_down_energy_rule)
    m.min_size = pyo.Constraint(m.P, rule=min_size_rule)
    m.max_size = pyo.Constraint(m.P, rule=max_size_rule)
    m.surplus = pyo.Objective(rule=surplus_rule, sense=pyo.maximize)
    return m


def offer_def_rule(m, p):
    """offer[p] = sum_m x[m, p] + battery[p]."""
    return m.offer_kw[p] == sum(m.x_kw[k, q] for k, q in m.MP if q == p) + m.battery_kw[p]


def member_up_rule(m, k):
    """sum_{p in (reg_up, spin)} x[m, p] <= up_kw[m]   (reg_down <= down_kw[m] is a bound of x)."""
    terms = [m.x_kw[j, p] for j, p in m.MP if j == k and p in UP_PRODUCTS]
    if not terms:
        return pyo.Constraint.Skip
    return sum(terms) <= m.up_kw[k]


def _baseline(m):
    return m.b_dis_kw - m.b_ch_kw


def battery_up_power_rule(m):
    """battery[reg_up] + battery[spin] + b <= P_max   (discharge power headroom above the baseline)."""
    return sum(m.battery_kw[p] for p in m.UP) + _baseline(m) <= m.battery_p_kw


def battery_up_energy_rule(m):
    """(battery[reg_up] + battery[spin] + b) * h <= soc   (full up deployment for the whole slot)."""
    return (sum(m.battery_kw[p] for p in m.UP) + _baseline(m)) * m.h <= m.soc_kwh


def battery_down_power_rule(m):
    """battery[reg_down] - b <= P_max   (charge power headroom below the baseline)."""
    return m.battery_kw["reg_down"] - _baseline(m) <= m.battery_p_kw


def battery_down_energy_rule(m):
    """(battery[reg_down] - b) * h <= E_max - soc   (full down deployment for the whole slot)."""
    return (m.battery_kw["reg_down"] - _baseline(m)) * m.h <= m.battery_kwh - m.soc_kwh


def min_size_rule(m, p):
    """offer[p] >= min_offer_kw * on[p]   (an offer is 0 or at least the minimum size)."""
    return m.offer_kw[p] >= m.min_offer_kw * m.offer_on[p]


def max_size_rule(m, p):
    """offer[p] <= bigM[p] * on[p]   (bigM = members' limit in p's direction + 2 P_max)."""
    return m.offer_kw[p] <= m.big_m[p] * m.offer_on[p]


def surplus_rule(m):
    """max sum_p offer[p] * value[p] / 1000 * h - sum_{m,p} x[m,p] * ask[m] / 1000 * h
    + (overflow + b) * energy_price * h - b * h * energy_price - tie_break * (b_dis + b_ch).

    The two battery energy terms cancel (stored energy is worth the energy price); they are written out
    so the objective reads as income.
    """
    ancillary = sum(m.offer_kw[p] * m.value[p] for p in m.P) / KW_PER_MW * m.h
    asks = sum(m.x_kw[k, p] * m.ask[k] for k, p in m.MP) / KW_PER_MW * m.h
    energy = (m.overflow_kw + _baseline(m)) * m.energy_price * m.h - _baseline(m) * m.h * m.energy_price
    return ancillary - asks + energy - _BASELINE_TIE_BREAK * (m.b_dis_kw + m.b_ch_kw)


def extract_bidding(m: pyo.ConcreteModel, inp: BiddingInput) -> BiddingDecision:
    """Read offers, contributions and capacities from a solved model; apply the offer price rule."""
    contributions: dict[str, dict[str, float]] = {p: {} for p in PRODUCTS}
    for k, p in m.MP:
        kw = max(0.0, float(pyo.value(m.x_kw[k, p])))
        if kw > 0:
            contributions[p][k] = kw
    for p in PRODUCTS:
        kw = max(0.0, float(pyo.value(m.battery_kw[p])))
        if kw > 0:
            contributions[p][BATTERY] = kw
    offers = {p: max(0.0, float(pyo.value(m.offer_kw[p]))) for p in PRODUCTS}
    asks = {f.member: f.price_per_kwh * KW_PER_MW for f in inp.members} | {BATTERY: 0.0}
    prices = {p: _offer_price(contributions[p], asks, inp.price_forecast_per_mw_h.get(p, 0.0))
              for p in PRODUCTS}
    b = float(pyo.value(_baseline(m)))
    value = net_value_per_mw_h(inp)
    income = sum(offers[p] * value[p] for p in PRODUCTS) / KW_PER_MW * inp.slot_s / S_PER_H
    up, down = physical_capacity_kw(inp, b)
    export_kw = float(pyo.value(m.overflow_kw)) + b
    return BiddingDecision(offers, prices, export_kw, up, down, contributions, income)


def physical_capacity_kw(inp: BiddingInput, baseline_kw: float = 0.0) -> tuple[float, float]:
    """(up, down) kW that members + battery can hold for the whole slot around battery baseline ``b``.

    up = sum up_kw + min(P_max - b, soc / h - b); down = sum down_kw + min(P_max + b, (E_max - soc) / h + b).
    """
    h = inp.slot_s / S_PER_H
    battery_up = max(0.0, min(inp.battery_p_kw - baseline_kw, inp.battery_soc_kwh / h - baseline_kw))
    battery_down = max(0.0, min(inp.battery_p_kw + baseline_kw,
                                (inp.battery_kwh - inp.battery_soc_kwh) / h + baseline_kw))
    return (sum(f.up_kw for f in inp.members) + battery_up,
            sum(f.down_kw for f in inp.members) + battery_down)


def _offer_price(contributions: Mapping[str, float], asks: Mapping[str, float], forecast: float) -> float:
    total = sum(contributions.values())
    if total <= 0:
        return 0.0
    weighted = sum(kw * asks[k] for k, kw in contributions.items()) / total
    return min(max(0.0, weighted), max(0.0, forecast))


def _member_limit(f: MemberFlex, product: str) -> float:
    return f.down_kw if product == "reg_down" else f.up_kw


def _big_m(inp: BiddingInput) -> dict[str, float]:
    up = sum(f.up_kw for f in inp.members) + 2 * inp.battery_p_kw
    down = sum(f.down_kw for f in inp.members) + 2 * inp.battery_p_kw
    return {p: (down if p == "reg_down" else up) for p in PRODUCTS}


def _validate(inp: BiddingInput) -> None:
    """Collect every problem of ``inp`` into one ConfigError."""
    problems = []
    try:
        validate_members(inp.members)
    except ConfigError as exc:
        problems += exc.problems
    problems += [f"member name {BATTERY!r} is reserved for the community battery; rename that member"
                 for f in inp.members if f.member == BATTERY]
    for p, v in inp.price_forecast_per_mw_h.items():
        if p not in PRODUCTS or not (math.isfinite(v) and v >= 0):
            problems.append(f"price forecast {p!r} = {v!r}; use products {PRODUCTS} with finite values >= 0")
    checks = (
        ("battery_kwh", inp.battery_kwh >= 0), ("battery_p_kw", inp.battery_p_kw >= 0),
        ("battery_soc_kwh", 0 <= inp.battery_soc_kwh <= inp.battery_kwh),
        ("min_offer_kw", inp.min_offer_kw >= 0), ("delivery_risk", 0 <= inp.delivery_risk <= 1),
        ("penalty_multiplier", inp.penalty_multiplier >= 0), ("slot_s", inp.slot_s > 0),
        ("energy_price_per_kwh", math.isfinite(inp.energy_price_per_kwh)),
    )
    problems += [f"{name} = {getattr(inp, name)!r} is out of range; need finite values with "
                 "battery_kwh, battery_p_kw, min_offer_kw, penalty_multiplier >= 0, "
                 "0 <= battery_soc_kwh <= battery_kwh, 0 <= delivery_risk <= 1, slot_s > 0"
                 for name, ok in checks if not ok]
    if problems:
        raise ConfigError(problems, source="VPP bidding input")
