"""Layer II: a community VPP decides its ancillary offers to the ISO for the next 15-minute slot.

Resources (as in the paper's Layer II): the community's Layer I over/under-flow ``O = sum planned_p_kw`` (what
is left after the feeder market, settled by each member with the utility), each member's flexibility (up/down
kW around its plan, with its ask) and the community battery (energy ``E``, power ``P``, state of charge
``soc``, efficiencies ``eta_c``, ``eta_d``). One MILP on HiGHS chooses, for the slot of ``h`` hours:

- ``x[m, p]`` kW of member m's flexibility in product p (reg_up, reg_down, spin), ``y[p]`` kW of the battery;
- the battery's baseline: ``ch`` kW charged from the community's surplus (``ch <= max(O, 0)``: it never
  charges from the grid at baseline), ``dis`` kW discharged into the community's deficit (``dis <= max(-O,
  0)``) and ``dis_x`` kW discharged beyond it, exported (``b = dis + dis_x - ch``, + = discharging);
- ``offer[p] = sum_m x[m, p] + y[p]``, 0 or at least ``min_offer_kw`` (binary ``on[p]``).

It maximises the community's expected surplus for the slot ($)::

    sum_p offer[p] v[p] h / 1000 - sum_{m,p} x[m,p] ask[m,p] h / 1000      ancillary income - members' asks
    + sum_p y[p] g[p] h                                                      battery's expected energy margin
    + ch (w eta_c - c_x) h + dis (c_r - w / eta_d) h + dis_x (c_x - w / eta_d) h    battery's baseline margin

with ``v[p] = forecast[p] (1 - risk (1 + penalty_multiplier))`` $/MW-h (the clearing price net of expected
non-delivery, as :mod:`federates.iso.settlement` settles it), ``ask[m, p]`` the member's ask (up products:
``price_per_kwh``, reg_down: ``down_price_per_kwh``), ``w`` the value of a kWh in the battery
(``stored_value_per_kwh``: the mean retail price, what refilling it costs), ``c_r`` / ``c_x`` the retail price
and the export credit of the slot, ``r_out`` what a discharged kWh is worth now (the retail price
when the community is short, ``O < 0``: it displaces members' imports; the export credit when it is long)
and ``c_in`` what an absorbed kWh costs now (the export credit when long, the retail price when short). The
expected energy margin of holding 1 kW of battery reserve is ``g[reg_down] = d_reg (w eta_c - c_in)``,
``g[reg_up] = d_reg (r_out - w / eta_d)``, ``g[spin] = d_spin (r_out - w / eta_d)``, with ``d_reg`` and
``d_spin`` the expected deployed share of held capacity (a zero-mean regulation signal deploys about a quarter
of it in each direction; spin is deployed only in rare events).

Constraints: members ``x[m, reg_up] + x[m, spin] <= up[m]``, ``x[m, reg_down] <= down[m]`` (0 for a member
whose ask ``ask[m, p]`` is above ``v[p]``: revenue is shared, not paid as bid, so nobody is paid below their ask in
expectation); battery, for a full deployment over the whole slot around its baseline::

    y[reg_up] + y[spin] + b <= P        (y[reg_up] + y[spin] + b) h / eta_d <= soc_low
    y[reg_down] - b <= P                (y[reg_down] - b) h eta_c <= E - soc_high

(``soc_low`` / ``soc_high``: the lowest and highest state of charge the battery can have at the slot's start,
projected by the VPP). What follows, for the default tariff (w = 0.18, export credit 0.04 $/kWh):

- **reg_down** is worth offering from the battery when the community is long: the energy it absorbs would
  have been exported at 0.04 $/kWh and is worth w eta_c = 0.17 $/kWh in storage (+33 $/MW-h held on top of
  the price); when the community is short, absorbed energy costs retail and reg_down only earns its price;
- **spin** is worth offering from stored energy almost always: it is deployed rarely, so holding it costs
  little (d_spin (r_out - w / eta_d) is a few $/MW-h at worst) while it clears at 10-13 $/MW-h;
- **reg_up** from the battery is worth offering when the community is short at peak prices (r_out = 0.30 >
  w / eta_d); while the community is long, a discharged kWh earns only the export credit and reg_up is left
  to the members, whose ask is their own opportunity cost.

The model is built once per member list and kept (:class:`OfferModel`): every slot only its mutable
parameters change and the same APPSI HiGHS object re-solves it (no Pyomo rebuild every 15 minutes).

Offer price rule (one price per product): the capacity-weighted ask of the contributors, in $/MW-h (the
battery asks ``max(-g[p], 0)`` x 1000, its expected energy cost), floored at 0, never above the forecast.

Sign convention: power is positive when INJECTED INTO THE NETWORK; the community's energy export at baseline
is ``O + b``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyomo.environ as pyo

from federates.common.errors import ConfigError
from federates.common.solver import make_persistent_solver, solve_persistent
from federates.vpp.aggregation import MemberFlex, overflow_kw, validate_members

PRODUCTS = ("reg_up", "reg_down", "spin")
UP_PRODUCTS = ("reg_up", "spin")
BATTERY = "community_battery"
KW_PER_MW = 1000.0
S_PER_H = 3600.0
REG_DEPLOYMENT = 0.25    # expected share of held regulation deployed in its direction (zero-mean signal)
SPIN_DEPLOYMENT = 0.03   # expected share of held spin deployed (ISO events: ~1 % of steps start 15 min)
_BASELINE_TIE_BREAK = 1e-6  # $/kW: prefer a zero battery baseline when it does not change the surplus


@dataclass(frozen=True)
class BiddingInput:
    """Everything the VPP knows when it bids for one slot (see the module docstring for symbols and units).

    ``retail_per_kwh`` / ``export_per_kwh``: the utility's prices in the slot; ``stored_value_per_kwh``: the
    value of a kWh in the battery (``w``); ``battery_soc_kwh`` / ``battery_soc_high_kwh``: the lowest / highest
    state of charge projected at the slot's start (``soc_high`` defaults to ``soc``).
    """

    members: Sequence[MemberFlex]
    price_forecast_per_mw_h: Mapping[str, float]
    retail_per_kwh: float
    export_per_kwh: float = 0.0
    stored_value_per_kwh: float | None = None     # None: the retail price
    battery_kwh: float = 0.0
    battery_p_kw: float = 0.0
    battery_soc_kwh: float = 0.0
    battery_soc_high_kwh: float | None = None
    eta_charge: float = 1.0
    eta_discharge: float = 1.0
    min_offer_kw: float = 100.0
    delivery_risk: float = 0.05
    penalty_multiplier: float = 2.0
    slot_s: int = 900

    @property
    def soc_high_kwh(self) -> float:
        return self.battery_soc_kwh if self.battery_soc_high_kwh is None else self.battery_soc_high_kwh

    @property
    def stored_value(self) -> float:
        return self.retail_per_kwh if self.stored_value_per_kwh is None else self.stored_value_per_kwh


@dataclass
class BiddingDecision:
    """The VPP's offers for one slot.

    ``contributions_kw[product][member]`` says who backs each offer (the battery as :data:`BATTERY`);
    ``battery_baseline_kw`` the battery's baseline (+ = discharging); ``export_kw`` the community's export at
    baseline (``O + b``); ``expected_income`` the expected ancillary income net of expected penalty, $ for the
    slot, at the forecast prices; ``up_capacity_kw`` / ``down_capacity_kw`` what members + battery can
    physically deliver in each direction around the baseline.
    """

    offers_kw: dict[str, float]
    offer_price_per_mw_h: dict[str, float]
    export_kw: float
    up_capacity_kw: float
    down_capacity_kw: float
    contributions_kw: dict[str, dict[str, float]]
    expected_income: float
    battery_baseline_kw: float = 0.0


def decide_offers(inp: BiddingInput) -> BiddingDecision:
    """Build, solve and read the bidding model once (the VPP keeps an :class:`OfferModel` instead)."""
    _validate(inp)
    return OfferModel([f.member for f in inp.members]).decide(inp)


def net_value_per_mw_h(inp: BiddingInput) -> dict[str, float]:
    """Expected value of 1 MW held for 1 h per product: forecast * (1 - risk * (1 + multiplier))."""
    factor = 1.0 - inp.delivery_risk * (1.0 + inp.penalty_multiplier)
    return {p: float(inp.price_forecast_per_mw_h.get(p, 0.0)) * factor for p in PRODUCTS}


def battery_margin_per_kwh(inp: BiddingInput) -> dict[str, float]:
    """``g[p]``: the battery's expected energy margin per kW held for one hour in product p ($/kW-h), and the
    baseline margins ``charge`` (from surplus) and ``discharge`` ($/kWh), as in the module docstring."""
    o = overflow_kw(inp.members)
    w = inp.stored_value
    c_in = inp.export_per_kwh if o > 0 else inp.retail_per_kwh
    r_out = inp.retail_per_kwh if o < 0 else inp.export_per_kwh
    up = r_out - w / inp.eta_discharge
    return {"reg_up": REG_DEPLOYMENT * up, "spin": SPIN_DEPLOYMENT * up,
            "reg_down": REG_DEPLOYMENT * (w * inp.eta_charge - c_in),
            "charge": w * inp.eta_charge - inp.export_per_kwh,
            "discharge": inp.retail_per_kwh - w / inp.eta_discharge,
            "discharge_export": inp.export_per_kwh - w / inp.eta_discharge}


class OfferModel:
    """The bidding MILP of one VPP, built once for a fixed list of member names and re-solved every slot.

    :meth:`decide` writes the slot's data into the mutable parameters (members absent from the input get zero
    flexibility) and re-solves with the same persistent APPSI HiGHS object.
    """

    def __init__(self, members: Sequence[str]):
        names = list(members)
        if len(set(names)) != len(names) or BATTERY in names:
            raise ConfigError(f"member names {names} must be unique and not {BATTERY!r}", source="VPP bidding")
        self.members = names
        self.model = build_bidding_model(names)
        self.solver = make_persistent_solver()

    def decide(self, inp: BiddingInput) -> BiddingDecision:
        _validate(inp)
        unknown = sorted({f.member for f in inp.members} - set(self.members))
        if unknown:
            raise ConfigError(f"members {unknown} are not in this VPP's offer model {self.members}",
                              source="VPP bidding")
        update_bidding_model(self.model, inp)
        solve_persistent(self.model, self.solver, context=f"VPP ancillary bidding ({len(inp.members)} members)")
        return extract_bidding(self.model, inp)


def build_bidding_model(members: Sequence[str]) -> pyo.ConcreteModel:
    """The bidding MILP's structure for ``members`` (every datum a mutable parameter, set by
    :func:`update_bidding_model`)."""
    m = pyo.ConcreteModel(name="vpp_ancillary_bidding")
    m.P = pyo.Set(initialize=PRODUCTS, ordered=True)
    m.UP = pyo.Set(initialize=UP_PRODUCTS, ordered=True)
    m.M = pyo.Set(initialize=list(members), ordered=True)
    mutable = dict(mutable=True, initialize=0.0, within=pyo.Reals)
    m.h = pyo.Param(**mutable)
    m.value = pyo.Param(m.P, **mutable)
    m.ask = pyo.Param(m.M, m.P, **mutable)
    m.limit = pyo.Param(m.M, m.P, **mutable)          # kW of member m usable in p (0: not eligible)
    m.up_kw = pyo.Param(m.M, **mutable)
    m.margin = pyo.Param(m.P, **mutable)              # g[p], $/kW-h
    m.charge_margin = pyo.Param(**mutable)
    m.discharge_margin = pyo.Param(**mutable)
    m.export_margin = pyo.Param(**mutable)
    m.battery_p_kw = pyo.Param(**mutable)
    m.battery_kwh = pyo.Param(**mutable)
    m.soc_low = pyo.Param(**mutable)
    m.soc_high = pyo.Param(**mutable)
    m.eta_c = pyo.Param(**mutable)
    m.eta_d = pyo.Param(**mutable)
    m.surplus_kw = pyo.Param(**mutable)               # max(O, 0)
    m.deficit_kw = pyo.Param(**mutable)               # max(-O, 0)
    m.min_offer_kw = pyo.Param(**mutable)
    m.big_m = pyo.Param(m.P, **mutable)

    m.x_kw = pyo.Var(m.M, m.P, within=pyo.NonNegativeReals)
    m.y_kw = pyo.Var(m.P, within=pyo.NonNegativeReals)
    m.ch_kw = pyo.Var(within=pyo.NonNegativeReals)
    m.dis_kw = pyo.Var(within=pyo.NonNegativeReals)
    m.dis_x_kw = pyo.Var(within=pyo.NonNegativeReals)
    m.offer_kw = pyo.Var(m.P, within=pyo.NonNegativeReals)
    m.offer_on = pyo.Var(m.P, within=pyo.Binary)

    m.member_limit = pyo.Constraint(m.M, m.P, rule=member_limit_rule)
    m.member_up = pyo.Constraint(m.M, rule=member_up_rule)
    m.offer_def = pyo.Constraint(m.P, rule=offer_def_rule)
    m.charge_from_surplus = pyo.Constraint(rule=charge_from_surplus_rule)
    m.discharge_into_deficit = pyo.Constraint(rule=discharge_into_deficit_rule)
    m.battery_up_power = pyo.Constraint(rule=battery_up_power_rule)
    m.battery_up_energy = pyo.Constraint(rule=battery_up_energy_rule)
    m.battery_down_power = pyo.Constraint(rule=battery_down_power_rule)
    m.battery_down_energy = pyo.Constraint(rule=battery_down_energy_rule)
    m.min_size = pyo.Constraint(m.P, rule=min_size_rule)
    m.max_size = pyo.Constraint(m.P, rule=max_size_rule)
    m.surplus = pyo.Objective(rule=surplus_rule, sense=pyo.maximize)
    return m


def update_bidding_model(m: pyo.ConcreteModel, inp: BiddingInput) -> None:
    """Write one slot's data into the model's mutable parameters (``inp`` is never mutated)."""
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
            m.limit[k, p] = _member_limit(f, p) if f and value[p] > ask else 0.0
    g = battery_margin_per_kwh(inp)
    for p in PRODUCTS:
        m.margin[p] = g[p]
    m.charge_margin.set_value(g["charge"])
    m.discharge_margin.set_value(g["discharge"])
    m.export_margin.set_value(g["discharge_export"])
    m.battery_p_kw.set_value(inp.battery_p_kw)
    m.battery_kwh.set_value(inp.battery_kwh)
    m.soc_low.set_value(inp.battery_soc_kwh)
    m.soc_high.set_value(inp.soc_high_kwh)
    m.eta_c.set_value(inp.eta_charge)
    m.eta_d.set_value(inp.eta_discharge)
    m.surplus_kw.set_value(max(overflow_kw(inp.members), 0.0))
    m.deficit_kw.set_value(max(-overflow_kw(inp.members), 0.0))
    m.min_offer_kw.set_value(inp.min_offer_kw)
    for p, v in _big_m(inp).items():
        m.big_m[p] = v


def member_limit_rule(m, k, p):
    """x[m, p] <= limit[m, p]   (down[m] for reg_down, up[m] otherwise; 0 if ask[m] >= v[p])."""
    return m.x_kw[k, p] <= m.limit[k, p]


def member_up_rule(m, k):
    """x[m, reg_up] + x[m, spin] <= up[m]   (both need headroom above the member's plan)."""
    return sum(m.x_kw[k, p] for p in m.UP) <= m.up_kw[k]


def offer_def_rule(m, p):
    """offer[p] = sum_m x[m, p] + y[p]."""
    return m.offer_kw[p] == sum(m.x_kw[k, p] for k in m.M) + m.y_kw[p]


def charge_from_surplus_rule(m):
    """ch <= max(O, 0)   (the battery charges at baseline only from the community's surplus)."""
    return m.ch_kw <= m.surplus_kw


def discharge_into_deficit_rule(m):
    """dis <= max(-O, 0)   (what the battery discharges beyond the community's deficit is dis_x, exported)."""
    return m.dis_kw <= m.deficit_kw


def _baseline(m):
    return m.dis_kw + m.dis_x_kw - m.ch_kw


def battery_up_power_rule(m):
    """y[reg_up] + y[spin] + b <= P   (discharge power headroom above the baseline)."""
    return sum(m.y_kw[p] for p in m.UP) + _baseline(m) <= m.battery_p_kw


def battery_up_energy_rule(m):
    """(y[reg_up] + y[spin] + b) h <= soc_low eta_d   (full up deployment for the whole slot)."""
    return (sum(m.y_kw[p] for p in m.UP) + _baseline(m)) * m.h <= m.soc_low * m.eta_d


def battery_down_power_rule(m):
    """y[reg_down] - b <= P   (charge power headroom below the baseline)."""
    return m.y_kw["reg_down"] - _baseline(m) <= m.battery_p_kw


def battery_down_energy_rule(m):
    """(y[reg_down] - b) h eta_c <= E - soc_high   (full down deployment for the whole slot)."""
    return (m.y_kw["reg_down"] - _baseline(m)) * m.h * m.eta_c <= m.battery_kwh - m.soc_high


def min_size_rule(m, p):
    """offer[p] >= min_offer_kw * on[p]   (an offer is 0 or at least the minimum size)."""
    return m.offer_kw[p] >= m.min_offer_kw * m.offer_on[p]


def max_size_rule(m, p):
    """offer[p] <= bigM[p] * on[p]   (bigM = members' limit in p's direction + 2 P_max)."""
    return m.offer_kw[p] <= m.big_m[p] * m.offer_on[p]


def surplus_rule(m):
    """max sum_p offer[p] v[p] h / 1000 - sum_{m,p} x[m,p] ask[m,p] h / 1000 + sum_p y[p] g[p] h
    + (ch g_charge + dis g_discharge + dis_x g_export) h - tie_break (ch + dis + dis_x)."""
    ancillary = sum(m.offer_kw[p] * m.value[p] for p in m.P) / KW_PER_MW * m.h
    asks = sum(m.x_kw[k, p] * m.ask[k, p] for k in m.M for p in m.P) / KW_PER_MW * m.h
    battery = sum(m.y_kw[p] * m.margin[p] for p in m.P) * m.h
    baseline = (m.ch_kw * m.charge_margin + m.dis_kw * m.discharge_margin + m.dis_x_kw * m.export_margin) * m.h
    return ancillary - asks + battery + baseline - _BASELINE_TIE_BREAK * (m.ch_kw + m.dis_kw + m.dis_x_kw)


def extract_bidding(m: pyo.ConcreteModel, inp: BiddingInput) -> BiddingDecision:
    """Read offers, contributions and capacities from a solved model; apply the offer price rule."""
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
    b = float(pyo.value(_baseline(m)))
    b = 0.0 if abs(b) < 1e-9 else b
    value = net_value_per_mw_h(inp)
    income = sum(offers[p] * value[p] for p in PRODUCTS) / KW_PER_MW * inp.slot_s / S_PER_H
    up, down = physical_capacity_kw(inp, b)
    return BiddingDecision(offers, prices, overflow_kw(inp.members) + b, up, down, contributions, income, b)


def physical_capacity_kw(inp: BiddingInput, baseline_kw: float = 0.0) -> tuple[float, float]:
    """(up, down) kW that members + battery can hold for the whole slot around battery baseline ``b``.

    up = sum up_kw + min(P - b, soc_low eta_d / h - b); down = sum down_kw + min(P + b, (E - soc_high) /
    (eta_c h) + b).
    """
    h = inp.slot_s / S_PER_H
    battery_up = max(0.0, min(inp.battery_p_kw - baseline_kw, inp.battery_soc_kwh * inp.eta_discharge / h
                              - baseline_kw))
    battery_down = max(0.0, min(inp.battery_p_kw + baseline_kw,
                                (inp.battery_kwh - inp.soc_high_kwh) / (inp.eta_charge * h) + baseline_kw))
    return (sum(f.up_kw for f in inp.members) + battery_up,
            sum(f.down_kw for f in inp.members) + battery_down)


def _offer_price(contributions: Mapping[str, float], asks: Mapping[str, float], forecast: float) -> float:
    total = sum(contributions.values())
    if total <= 0:
        return 0.0
    weighted = sum(kw * asks[k] for k, kw in contributions.items()) / total
    return min(max(0.0, weighted), max(0.0, forecast))


def _ask(f: MemberFlex, product: str) -> float:
    """Member f's ask for ``product`` in $/MW-h."""
    return (f.down_ask_per_kwh if product == "reg_down" else f.price_per_kwh) * KW_PER_MW


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
        ("battery_soc_kwh", 0 <= inp.battery_soc_kwh <= inp.soc_high_kwh <= inp.battery_kwh),
        ("eta_charge", 0 < inp.eta_charge <= 1), ("eta_discharge", 0 < inp.eta_discharge <= 1),
        ("min_offer_kw", inp.min_offer_kw >= 0), ("delivery_risk", 0 <= inp.delivery_risk <= 1),
        ("penalty_multiplier", inp.penalty_multiplier >= 0), ("slot_s", inp.slot_s > 0),
        ("retail_per_kwh", math.isfinite(inp.retail_per_kwh)), ("export_per_kwh", math.isfinite(inp.export_per_kwh)),
        ("stored_value_per_kwh", math.isfinite(inp.stored_value)),
    )
    problems += [f"{name} = {getattr(inp, name)!r} is out of range; need finite values with "
                 "battery_kwh, battery_p_kw, min_offer_kw, penalty_multiplier >= 0, 0 < eta <= 1, "
                 "0 <= battery_soc_kwh <= battery_soc_high_kwh <= battery_kwh, 0 <= delivery_risk <= 1, slot_s > 0"
                 for name, ok in checks if not ok]
    if problems:
        raise ConfigError(problems, source="VPP bidding input")
