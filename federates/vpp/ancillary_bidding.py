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

The model is laid out once per member list and kept in one HiGHS object (:class:`OfferModel`, written straight
into HiGHS, no modelling layer): every slot only its data changes (row bounds, a few matrix entries, the
objective) and HiGHS re-solves it. Its columns, rows and arithmetic are those of the Pyomo model it replaced
(``tests/unit/test_vpp_offer_highs.py`` keeps that model and checks both give HiGHS the same floats).

Offer price rule (one price per product): the capacity-weighted ask of the contributors, in $/MW-h (the
battery asks ``max(-g[p], 0)`` x 1000, its expected energy cost), floored at 0, never above the forecast.

Sign convention: power is positive when INJECTED INTO THE NETWORK; the community's energy export at baseline
is ``O + b``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from federates.common.errors import ConfigError, InfeasibleError, SolverError
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
    """The bidding MILP of one VPP, laid out once for a fixed list of member names and re-solved every slot on
    one kept HiGHS object.

    :meth:`decide` writes the slot's data (members absent from the input get zero flexibility) into HiGHS: the
    row bounds, the data-dependent matrix entries and the objective (:func:`update_bidding_highs`), then
    re-solves. The first slot builds the model with its data (:func:`build_bidding_highs`).
    """

    def __init__(self, members: Sequence[str]):
        names = list(members)
        if len(set(names)) != len(names) or BATTERY in names:
            raise ConfigError(f"member names {names} must be unique and not {BATTERY!r}", source="VPP bidding")
        self.members = names
        self.layout = BiddingLayout(len(names))
        self.highs: highspy.Highs | None = None

    def decide(self, inp: BiddingInput) -> BiddingDecision:
        _validate(inp)
        data = slot_data(inp, self.members)
        if self.highs is None:
            self.highs = build_bidding_highs(self.layout, data)
        else:
            update_bidding_highs(self.highs, self.layout, data)
        col_value = solve_bidding(self.highs, context=f"VPP ancillary bidding ({len(inp.members)} members)")
        return extract_bidding(col_value, self.layout, self.members, inp)


class BiddingLayout:
    """Where each variable and constraint of the bidding MILP sits in HiGHS, for ``n`` members.

    Columns: ``x[m, p]`` (member-major, products in :data:`PRODUCTS` order), then ``offer[p], y[p]`` for each
    product, ``ch``, ``dis``, ``dis_x`` and the binaries ``on[p]``. Rows: ``member_limit[m, p]``,
    ``member_up[m]``, ``offer_def[p]``, ``charge_from_surplus``, ``discharge_into_deficit``,
    ``battery_up_power``, ``battery_up_energy``, ``battery_down_power``, ``battery_down_energy``,
    ``min_size[p]``, ``max_size[p]``. (The order a Pyomo model of these families, declared in this order, gets
    from Pyomo's APPSI HiGHS interface: columns in their first appearance in the rows. HiGHS's answer depends
    on the order, and this one reproduces the VPP's offers of every earlier run bit for bit.)
    """

    def __init__(self, n: int):
        self.n = n
        base = 3 * n
        self.offer = [base + 2 * j for j in range(3)]
        self.y = [base + 2 * j + 1 for j in range(3)]
        self.ch, self.dis, self.dis_x = base + 6, base + 7, base + 8
        self.on = [base + 9 + j for j in range(3)]
        self.n_cols = base + 12
        r = 4 * n
        self.offer_def = [r + j for j in range(3)]
        self.charge, self.discharge = r + 3, r + 4
        self.up_power, self.up_energy, self.down_power, self.down_energy = r + 5, r + 6, r + 7, r + 8
        self.min_size = [r + 9 + j for j in range(3)]
        self.max_size = [r + 12 + j for j in range(3)]
        self.n_rows = r + 15
        # rows whose upper bound is slot data: member_limit, member_up, then charge ... down_energy
        self.data_rows = np.concatenate([np.arange(4 * n), np.arange(r + 3, r + 9)]).astype(np.int32)

    def x(self, i: int, j: int) -> int:
        """Column of x[member i, product j]."""
        return 3 * i + j


@dataclass(frozen=True)
class SlotData:
    """One slot's data of the bidding MILP, per member in the layout's order (0 for members without a plan).

    ``ask`` (n x 3, $/MW-h) and ``limit`` (n x 3, kW usable in each product; 0 where the ask is not below the
    product's value), ``up_kw`` (n); the rest as in the module docstring.
    """

    h: float
    value: tuple[float, float, float]
    ask: np.ndarray
    limit: np.ndarray
    up_kw: np.ndarray
    margin: dict[str, float]
    battery_p_kw: float
    battery_kwh: float
    soc_low: float
    soc_high: float
    eta_c: float
    eta_d: float
    surplus_kw: float
    deficit_kw: float
    min_offer_kw: float
    big_m: tuple[float, float, float]


def slot_data(inp: BiddingInput, members: Sequence[str]) -> SlotData:
    """The MILP's data for ``inp`` with the members laid out as ``members``; raises if ``inp`` names others."""
    index = {k: i for i, k in enumerate(members)}
    unknown = sorted({f.member for f in inp.members} - set(index))
    if unknown:
        raise ConfigError(f"members {unknown} are not in this VPP's offer model {list(members)}",
                          source="VPP bidding")
    n = len(members)
    present = np.zeros(n, dtype=bool)
    up, down = np.zeros(n), np.zeros(n)
    up_ask, down_ask = np.zeros(n), np.zeros(n)
    for f in inp.members:
        i = index[f.member]
        present[i] = True
        up[i], down[i] = f.up_kw, f.down_kw
        up_ask[i], down_ask[i] = f.price_per_kwh, f.down_ask_per_kwh
    value = net_value_per_mw_h(inp)
    ask = np.empty((n, 3))
    limit = np.empty((n, 3))
    for j, p in enumerate(PRODUCTS):
        ask[:, j] = np.where(present, (down_ask if p == "reg_down" else up_ask) * KW_PER_MW, 0.0)
        usable = down if p == "reg_down" else up
        limit[:, j] = np.where(present & (value[p] > ask[:, j]), usable, 0.0)
    o = overflow_kw(inp.members)
    big_m = _big_m(inp)
    return SlotData(h=inp.slot_s / S_PER_H, value=tuple(value[p] for p in PRODUCTS), ask=ask, limit=limit,
                    up_kw=up, margin=battery_margin_per_kwh(inp), battery_p_kw=inp.battery_p_kw,
                    battery_kwh=inp.battery_kwh, soc_low=inp.battery_soc_kwh, soc_high=inp.soc_high_kwh,
                    eta_c=inp.eta_charge, eta_d=inp.eta_discharge, surplus_kw=max(o, 0.0), deficit_kw=max(-o, 0.0),
                    min_offer_kw=inp.min_offer_kw, big_m=tuple(big_m[p] for p in PRODUCTS))


def objective_costs(lay: BiddingLayout, d: SlotData) -> np.ndarray:
    """Objective coefficients ($ per kW of each column, maximised)::

        offer[p]: h / 1000 v[p]        x[m, p]: -(h / 1000 ask[m, p])        y[p]: h g[p]
        ch: h g_charge - tie_break     dis: h g_discharge - tie_break        dis_x: h g_export - tie_break
    """
    costs = np.zeros(lay.n_cols)
    per_mw = d.h / KW_PER_MW
    costs[:3 * lay.n] = -(per_mw * d.ask).ravel()
    for j, p in enumerate(PRODUCTS):
        costs[lay.offer[j]] = per_mw * d.value[j]
        costs[lay.y[j]] = d.h * d.margin[p]
    costs[lay.ch] = d.h * d.margin["charge"] - _BASELINE_TIE_BREAK
    costs[lay.dis] = d.h * d.margin["discharge"] - _BASELINE_TIE_BREAK
    costs[lay.dis_x] = d.h * d.margin["discharge_export"] - _BASELINE_TIE_BREAK
    return costs


def row_upper(lay: BiddingLayout, d: SlotData) -> np.ndarray:
    """Every row's upper bound (all rows are ``<=`` but ``offer_def``, an equality at 0)::

        member_limit[m, p] <= limit[m, p]      member_up[m] <= up[m]       charge_from_surplus <= max(O, 0)
        discharge_into_deficit <= max(-O, 0)   battery_*_power <= P        battery_up_energy <= soc_low eta_d
        battery_down_energy <= E - soc_high    min_size[p], max_size[p] <= 0
    """
    upper = np.zeros(lay.n_rows)
    upper[:3 * lay.n] = d.limit.ravel()
    upper[3 * lay.n:4 * lay.n] = d.up_kw
    upper[lay.charge], upper[lay.discharge] = d.surplus_kw, d.deficit_kw
    upper[lay.up_power] = upper[lay.down_power] = d.battery_p_kw
    # as Pyomo evaluated them: minus the energy rows' constant parts, h * 0 and -(eta_c h) * 0
    upper[lay.up_energy] = d.soc_low * d.eta_d - d.h * 0
    upper[lay.down_energy] = (d.battery_kwh - d.soc_high) - (-(d.eta_c * d.h) * 0)
    return upper


def data_entries(lay: BiddingLayout, d: SlotData) -> list[tuple[int, int, float]]:
    """The matrix entries that are slot data, (row, column, value), rows in order::

        battery_up_energy:   (y[reg_up] + y[spin] + dis + dis_x - ch) h
        battery_down_energy: (y[reg_down] - dis - dis_x + ch) eta_c h
        min_size[p]:         min_offer_kw on[p] - offer[p]
        max_size[p]:         offer[p] - bigM[p] on[p]
    """
    ech = d.eta_c * d.h
    up, down = lay.up_energy, lay.down_energy
    out = [(up, lay.y[0], d.h), (up, lay.y[2], d.h), (up, lay.dis, d.h), (up, lay.dis_x, d.h), (up, lay.ch, d.h * -1),
           (down, lay.y[1], ech), (down, lay.dis, -ech), (down, lay.dis_x, -ech), (down, lay.ch, -ech * -1)]
    out += [(lay.min_size[j], lay.on[j], d.min_offer_kw) for j in range(3)]
    out += [(lay.max_size[j], lay.on[j], -d.big_m[j]) for j in range(3)]
    return out


def _rows(lay: BiddingLayout, d: SlotData) -> list[list[tuple[int, float]]]:
    """Every row's entries (column, value), in the order written; ``None`` marks a data entry, given this slot's
    value from :func:`data_entries` (HiGHS leaves out those that are 0; :func:`update_bidding_highs` sets them
    when a later slot makes them non-zero)."""
    n = lay.n
    rows: list[list[tuple[int, float | None]]] = [[(lay.x(i, j), 1.0)] for i in range(n) for j in range(3)]
    rows += [[(lay.x(i, 0), 1.0), (lay.x(i, 2), 1.0)] for i in range(n)]
    rows += [[(lay.offer[j], 1.0)] + [(lay.x(i, j), -1.0) for i in range(n)] + [(lay.y[j], -1.0)] for j in range(3)]
    rows += [[(lay.ch, 1.0)], [(lay.dis, 1.0)]]
    rows += [[(lay.y[0], 1.0), (lay.y[2], 1.0), (lay.dis, 1.0), (lay.dis_x, 1.0), (lay.ch, -1.0)]]
    rows += [[(lay.y[0], None), (lay.y[2], None), (lay.dis, None), (lay.dis_x, None), (lay.ch, None)]]
    rows += [[(lay.y[1], 1.0), (lay.dis, -1.0), (lay.dis_x, -1.0), (lay.ch, 1.0)]]
    rows += [[(lay.y[1], None), (lay.dis, None), (lay.dis_x, None), (lay.ch, None)]]
    rows += [[(lay.on[j], None), (lay.offer[j], -1.0)] for j in range(3)]
    rows += [[(lay.offer[j], 1.0), (lay.on[j], None)] for j in range(3)]
    data = {(r, c): v for r, c, v in data_entries(lay, d)}
    return [[(c, data[r, c] if v is None else v) for c, v in row] for r, row in enumerate(rows)]


def build_bidding_highs(lay: BiddingLayout, d: SlotData) -> highspy.Highs:
    """The bidding MILP in a new HiGHS object, with the first slot's data (maximise :func:`objective_costs`
    subject to the rows of :func:`row_upper`; x, y, offer, ch, dis, dis_x >= 0; on binary)."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    n = lay.n_cols
    upper = np.full(n, highspy.kHighsInf)
    upper[lay.on] = 1.0
    h.addVars(n, np.zeros(n), upper)
    kinds = np.array([highspy.HighsVarType.kContinuous] * n)
    kinds[lay.on] = highspy.HighsVarType.kInteger
    h.changeColsIntegrality(n, np.arange(n), kinds)
    rows = _rows(lay, d)
    lower = np.full(lay.n_rows, -highspy.kHighsInf)
    lower[lay.offer_def] = 0.0
    starts = np.cumsum([0] + [len(r) for r in rows[:-1]])
    index = np.array([c for r in rows for c, _ in r], dtype=np.int32)
    values = np.array([v for r in rows for _, v in r], dtype=np.double)
    h.addRows(lay.n_rows, lower, row_upper(lay, d), len(values), starts, index, values)
    h.changeObjectiveOffset(0.0)
    h.changeObjectiveSense(highspy.ObjSense.kMaximize)
    h.changeColsCost(n, np.arange(n), objective_costs(lay, d))
    return h


def update_bidding_highs(h: highspy.Highs, lay: BiddingLayout, d: SlotData) -> None:
    """Write one slot's data into the kept model: row bounds, data entries, objective."""
    rows = lay.data_rows
    h.changeRowsBounds(len(rows), rows, np.full(len(rows), -highspy.kHighsInf), row_upper(lay, d)[rows])
    for r, c, v in data_entries(lay, d):
        h.changeCoeff(r, c, v)
    h.changeColsCost(lay.n_cols, np.arange(lay.n_cols), objective_costs(lay, d))
    h.changeObjectiveOffset(0.0)


def solve_bidding(h: highspy.Highs, *, context: str) -> list[float]:
    """Run HiGHS; the optimal column values, or :class:`InfeasibleError` / :class:`SolverError`."""
    h.run()
    status = h.getModelStatus()
    if status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible,
                  highspy.HighsModelStatus.kUnbounded):
        raise InfeasibleError(f"model 'vpp_ancillary_bidding' ({context}) is {h.modelStatusToString(status)}")
    if status != highspy.HighsModelStatus.kOptimal:
        raise SolverError(f"HiGHS stopped on model 'vpp_ancillary_bidding' ({context}) with status "
                          f"{h.modelStatusToString(status)}")
    return h.getSolution().col_value


def extract_bidding(col_value: Sequence[float], lay: BiddingLayout, members: Sequence[str],
                    inp: BiddingInput) -> BiddingDecision:
    """Read offers, contributions and capacities from the solved columns; apply the offer price rule."""
    contributions: dict[str, dict[str, float]] = {p: {} for p in PRODUCTS}
    x = np.asarray(col_value[:3 * lay.n]).reshape(lay.n, 3)
    for i, j in zip(*np.nonzero(x > 1e-9), strict=True):   # member-major, as the columns
        contributions[PRODUCTS[j]][members[i]] = float(x[i, j])
    for j, p in enumerate(PRODUCTS):
        kw = float(col_value[lay.y[j]])
        if kw > 1e-9:
            contributions[p][BATTERY] = kw
    offers = {p: math.fsum(contributions[p].values()) if col_value[lay.on[j]] > 0.5 else 0.0
              for j, p in enumerate(PRODUCTS)}
    contributions = {p: (c if offers[p] > 0 else {}) for p, c in contributions.items()}
    g = battery_margin_per_kwh(inp)
    flex = {f.member: f for f in inp.members}
    prices = {p: _offer_price(contributions[p], {k: _ask(flex[k], p) for k in contributions[p] if k != BATTERY}
                              | {BATTERY: max(-g[p], 0.0) * KW_PER_MW}, inp.price_forecast_per_mw_h.get(p, 0.0))
              for p in PRODUCTS}
    b = sum((col_value[lay.dis], col_value[lay.dis_x], -col_value[lay.ch]))
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
