"""Layer I home energy management: one prosumer's rolling-horizon linear programme.

Every 30 min the prosumer plans the bid slot (the slot 30 min ahead) and the ``H - 1`` slots after it
(default 24 h of 30-min slots), carrying the battery SOC and the energy still owed to each flexible
load forward from real time. The LP chooses at once grid import/export, battery charge/discharge,
flexible-load power and the reserve (up/down kW) the battery can hold for the VPP. P2P bids and VPP
offers are derived from its solution in :mod:`federates.prosumer.bidding`.

SIGN CONVENTION (project-wide): a net power is positive when it is INJECTED INTO THE DISTRIBUTION
NETWORK by the named element. Inside the LP every variable is a non-negative magnitude with an explicit
direction (``imp_kw`` from the utility, ``exp_kw`` to the utility, ``ch_kw`` into the battery,
``dis_kw`` out of it); the planned net injection of the prosumer is ``exp - imp - p2p_buy`` where
``p2p_buy`` (kW, + = bought from peers) is a committed P2P position.

Model (slot ``t`` of length ``dt`` h, flexible load ``f``)::

    min  sum_t dt (retail_t imp_t - buyback_t exp_t + eps (ch_t + dis_t))
         - sum_t value_t (rup_t + rdn_t) + M sum_t (sup_t + sdn_t)
         - v_term soc_{H-1} + demand_charge * peak

Commitments enter as fixed terms: the P2P position shifts the right-hand side of the energy balance, the
awarded reserve is a lower bound on the reserve the battery must hold (softened with a heavily penalised
shortfall ``sup/sdn`` so that an SOC drifted by forecast errors never makes the plan infeasible).

Speed: Pyomo's APPSI persistent interface re-evaluates every mutable-Param expression in Python before
each solve (about 7 ms per prosumer here, 7 s for a 1,000-prosumer round; benchmarks/hems_round.py).
:class:`CompiledHems` therefore compiles the Pyomo model ONCE with Pyomo's standard-form compiler (the
constraint matrix, with the battery efficiencies, comes from the Pyomo rules above: one source of
truth), keeps one persistent ``highspy.Highs`` per prosumer, and before each re-solve writes the
time-varying data straight into the row bounds, column bounds and costs that the mutable Params occupy
(vectorised numpy, warm-started dual simplex). ``tests/unit/test_hems.py`` checks that these writes
equal what a fresh Pyomo compile of the updated Params gives, and that both paths return the same
optimum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import highspy
import numpy as np
import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from federates.common.errors import InfeasibleError, SolverError
from federates.common.solver import solve

logger = logging.getLogger(__name__)

CYCLE_COST_PER_KWH = 1e-4
"""Tiny cost on battery throughput: removes simultaneous charge/discharge from degenerate optima."""
SHORTFALL_PENALTY_PER_KW = 1e3
"""Penalty on awarded reserve the battery cannot hold (only binds after large forecast errors)."""


@dataclass(frozen=True)
class BatteryParams:
    """Static battery data in kW/kWh (all zero = no battery)."""

    capacity_kwh: float = 0.0
    p_max_kw: float = 0.0
    eta_charge: float = 1.0
    eta_discharge: float = 1.0
    soc_min_kwh: float = 0.0
    soc_max_kwh: float = 0.0


@dataclass
class HemsData:
    """Everything one LP needs; arrays have length ``H`` (flex arrays shape ``(n_flex, H)``).

    ``net_load_kw`` is the forecast inflexible load minus forecast PV minus the committed P2P purchase
    (kW, + = the house needs power). ``soc_floor_kwh[t]`` is the lowest end-of-slot SOC allowed (the
    resilience reserve, relaxed near the start when the real SOC is below it). For flexible load ``f``:
    ``flex_max_kw[f, t]`` = p_max x the fraction of slot ``t`` inside its window, ``flex_new_kwh[f, t]`` =
    energy of a window opening in slot ``t``, ``flex_rem_max_kwh[f, t]`` = the most energy that may still
    be owed at the end of slot ``t`` (p_max x window time left after it), ``flex_rem_init_kwh[f]`` = energy
    still owed at the horizon start.
    """

    slot_h: float
    battery: BatteryParams
    net_load_kw: np.ndarray
    retail_price_per_kwh: np.ndarray
    buyback_price_per_kwh: np.ndarray
    soc_init_kwh: float
    soc_floor_kwh: np.ndarray
    reserve_up_award_kw: np.ndarray
    reserve_down_award_kw: np.ndarray
    reserve_value_per_kw: np.ndarray
    flex_max_kw: np.ndarray
    flex_new_kwh: np.ndarray
    flex_rem_max_kwh: np.ndarray
    flex_rem_init_kwh: np.ndarray
    terminal_value_per_kwh: float = 0.0
    demand_charge_per_kw: float = 0.0
    peak_so_far_kw: float = 0.0

    @property
    def horizon(self) -> int:
        return len(self.net_load_kw)

    @property
    def n_flex(self) -> int:
        return int(self.flex_max_kw.shape[0])


@dataclass
class HemsPlan:
    """Solution of one HEMS LP (kW averages per slot, SOC at slot ends)."""

    import_kw: np.ndarray
    export_kw: np.ndarray
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    soc_kwh: np.ndarray
    flex_kw: np.ndarray
    reserve_up_kw: np.ndarray
    reserve_down_kw: np.ndarray
    marginal_value_per_kwh: float
    """Dual of the bid slot's energy balance: the value of one more kWh there."""
    fallback: bool = False
    shortfall_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def battery_kw(self) -> np.ndarray:
        """Net battery power, + = discharging (delivering power to the house bus)."""
        return self.discharge_kw - self.charge_kw


# --------------------------------------------------------------------------------------------- model
def _define_sets_and_params(m: pyo.ConcreteModel, data: HemsData) -> None:
    h, nf = data.horizon, data.n_flex
    m.T = pyo.RangeSet(0, h - 1)
    m.F = pyo.RangeSet(0, nf - 1) if nf else pyo.Set(initialize=[])
    mut = {"mutable": True, "within": pyo.Reals}
    m.net_load = pyo.Param(m.T, initialize=0.0, **mut)
    m.retail = pyo.Param(m.T, initialize=0.0, **mut)
    m.buyback = pyo.Param(m.T, initialize=0.0, **mut)
    m.soc_init = pyo.Param(initialize=0.0, **mut)
    m.soc_floor = pyo.Param(m.T, initialize=0.0, **mut)
    m.award_up = pyo.Param(m.T, initialize=0.0, **mut)
    m.award_dn = pyo.Param(m.T, initialize=0.0, **mut)
    m.res_value = pyo.Param(m.T, initialize=0.0, **mut)
    m.flex_max = pyo.Param(m.F, m.T, initialize=0.0, **mut)
    m.flex_new = pyo.Param(m.F, m.T, initialize=0.0, **mut)
    m.rem_max = pyo.Param(m.F, m.T, initialize=0.0, **mut)
    m.rem_init = pyo.Param(m.F, initialize=0.0, **mut)
    m.term_value = pyo.Param(initialize=0.0, **mut)
    m.peak_lb = pyo.Param(initialize=0.0, **mut)


def _define_variables(m: pyo.ConcreteModel, data: HemsData) -> None:
    b = data.battery
    nn = pyo.NonNegativeReals
    m.imp = pyo.Var(m.T, within=nn, doc="utility import kW")
    m.exp = pyo.Var(m.T, within=nn, doc="utility export kW")
    m.ch = pyo.Var(m.T, bounds=(0.0, b.p_max_kw), doc="battery charge kW")
    m.dis = pyo.Var(m.T, bounds=(0.0, b.p_max_kw), doc="battery discharge kW")
    m.soc = pyo.Var(m.T, bounds=lambda mm, t: (mm.soc_floor[t], b.soc_max_kwh), doc="SOC at slot end kWh")
    m.rup = pyo.Var(m.T, within=nn, doc="reserve up (more injection) kW")
    m.rdn = pyo.Var(m.T, within=nn, doc="reserve down (less injection) kW")
    m.sup = pyo.Var(m.T, within=nn, doc="shortfall on awarded reserve up kW")
    m.sdn = pyo.Var(m.T, within=nn, doc="shortfall on awarded reserve down kW")
    m.flex = pyo.Var(m.F, m.T, bounds=lambda mm, f, t: (0.0, mm.flex_max[f, t]), doc="flex load kW")
    m.rem = pyo.Var(m.F, m.T, bounds=lambda mm, f, t: (0.0, mm.rem_max[f, t]), doc="flex energy owed kWh")
    if data.demand_charge_per_kw > 0:
        m.peak = pyo.Var(bounds=(m.peak_lb, None), doc="peak import kW")


def balance_rule(m, t):
    """imp_t - exp_t + dis_t - ch_t - sum_f flex_ft = net_load_t   (dual = marginal value of energy)."""
    return m.imp[t] - m.exp[t] + m.dis[t] - m.ch[t] - sum(m.flex[f, t] for f in m.F) == m.net_load[t]


def soc_rule(m, t):
    """soc_t = soc_{t-1} + dt (eta_c ch_t - dis_t / eta_d), with soc_{-1} = soc_init."""
    prev = m.soc[t - 1] if t > 0 else m.soc_init
    return m.soc[t] - prev - m.dt * (m.eta_c * m.ch[t] - m.dis[t] / m.eta_d) == 0


def flex_rule(m, f, t):
    """rem_ft = rem_f,t-1 + new_ft - dt flex_ft (rem_f,-1 = rem_init_f); 0 <= rem_ft <= rem_max_ft."""
    prev = m.rem[f, t - 1] if t > 0 else m.rem_init[f]
    return m.rem[f, t] - prev + m.dt * m.flex[f, t] == m.flex_new[f, t]


def reserve_up_power_rule(m, t):
    """dis_t - ch_t + rup_t <= p_max (the battery can raise its injection by rup_t)."""
    return m.dis[t] - m.ch[t] + m.rup[t] <= m.p_max


def reserve_down_power_rule(m, t):
    """ch_t - dis_t + rdn_t <= p_max (the battery can lower its injection by rdn_t)."""
    return m.ch[t] - m.dis[t] + m.rdn[t] <= m.p_max


def reserve_up_energy_rule(m, t):
    """soc_t - dt rup_t / eta_d >= soc_min (a full-slot activation keeps SOC above its minimum)."""
    return m.soc[t] - m.dt * m.rup[t] / m.eta_d >= m.soc_min


def reserve_down_energy_rule(m, t):
    """soc_t + dt eta_c rdn_t <= soc_max."""
    return m.soc[t] + m.dt * m.eta_c * m.rdn[t] <= m.soc_max


def award_up_rule(m, t):
    """rup_t + sup_t >= award_up_t (honour the VPP's reserve award; sup is penalised)."""
    return m.rup[t] + m.sup[t] >= m.award_up[t]


def award_down_rule(m, t):
    """rdn_t + sdn_t >= award_dn_t."""
    return m.rdn[t] + m.sdn[t] >= m.award_dn[t]


def peak_rule(m, t):
    """imp_t <= peak (demand charge on the horizon's peak import, at least the peak so far)."""
    return m.imp[t] <= m.peak


def objective_rule(m):
    """Energy cost - reserve value + shortfall penalty - terminal SOC value + demand charge."""
    energy = sum(
        m.dt * (m.retail[t] * m.imp[t] - m.buyback[t] * m.exp[t] + CYCLE_COST_PER_KWH * (m.ch[t] + m.dis[t]))
        for t in m.T
    )
    reserve = sum(
        m.res_value[t] * (m.rup[t] + m.rdn[t]) - SHORTFALL_PENALTY_PER_KW * (m.sup[t] + m.sdn[t]) for t in m.T
    )
    cost = energy - reserve - m.term_value * m.soc[m.T.last()]
    if hasattr(m, "peak"):
        cost = cost + m.demand_charge * m.peak
    return cost


def build_hems_model(data: HemsData) -> pyo.ConcreteModel:
    """Build the HEMS LP for ``data`` (not mutated); time-varying inputs are mutable Params."""
    b = data.battery
    m = pyo.ConcreteModel(name="hems")
    _define_sets_and_params(m, data)
    m.dt = data.slot_h
    m.p_max = b.p_max_kw
    m.eta_c, m.eta_d = b.eta_charge, b.eta_discharge
    m.soc_min, m.soc_max = b.soc_min_kwh, b.soc_max_kwh
    m.demand_charge = data.demand_charge_per_kw
    _define_variables(m, data)
    m.balance = pyo.Constraint(m.T, rule=balance_rule)
    m.soc_dyn = pyo.Constraint(m.T, rule=soc_rule)
    m.flex_dyn = pyo.Constraint(m.F, m.T, rule=flex_rule)
    m.res_up_p = pyo.Constraint(m.T, rule=reserve_up_power_rule)
    m.res_dn_p = pyo.Constraint(m.T, rule=reserve_down_power_rule)
    m.res_up_e = pyo.Constraint(m.T, rule=reserve_up_energy_rule)
    m.res_dn_e = pyo.Constraint(m.T, rule=reserve_down_energy_rule)
    m.award_up_c = pyo.Constraint(m.T, rule=award_up_rule)
    m.award_dn_c = pyo.Constraint(m.T, rule=award_down_rule)
    if data.demand_charge_per_kw > 0:
        m.peak_c = pyo.Constraint(m.T, rule=peak_rule)
    m.obj = pyo.Objective(rule=objective_rule, sense=pyo.minimize)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    update_hems_params(m, data)
    return m


def _store(param, values) -> None:
    for i, v in enumerate(values.tolist()):
        param[i] = v


def _store2(param, values: np.ndarray) -> None:
    for (f, t), v in np.ndenumerate(values):
        param[f, t] = float(v)


def update_hems_params(m: pyo.ConcreteModel, data: HemsData) -> None:
    """Push the time-varying inputs of ``data`` into the mutable Params of ``m``."""
    _store(m.net_load, data.net_load_kw)
    _store(m.retail, data.retail_price_per_kwh)
    _store(m.buyback, data.buyback_price_per_kwh)
    _store(m.soc_floor, data.soc_floor_kwh)
    _store(m.award_up, data.reserve_up_award_kw)
    _store(m.award_dn, data.reserve_down_award_kw)
    _store(m.res_value, data.reserve_value_per_kw)
    if data.n_flex:
        _store2(m.flex_max, data.flex_max_kw)
        _store2(m.flex_new, data.flex_new_kwh)
        _store2(m.rem_max, data.flex_rem_max_kwh)
        _store(m.rem_init, data.flex_rem_init_kwh)
    m.soc_init = float(data.soc_init_kwh)
    m.term_value = float(data.terminal_value_per_kwh)
    m.peak_lb = float(data.peak_so_far_kw)


def _vals(var, values: ComponentMap) -> np.ndarray:
    return np.array([values[var[t]] for t in var.index_set()])


def extract_hems(
    m: pyo.ConcreteModel, values: ComponentMap | None = None, dual0: float | None = None
) -> HemsPlan:
    """Plain-data plan from a solved model (``values``: var -> value map; default: the loaded values)."""
    if values is None:
        values = ComponentMap((v, v.value) for v in m.component_data_objects(pyo.Var))
    if dual0 is None:
        dual0 = m.dual[m.balance[0]]
    h = len(m.T)
    nf = len(m.F)
    flex = np.array([[values[m.flex[f, t]] for t in m.T] for f in m.F]).reshape(nf, h)
    return HemsPlan(
        import_kw=_vals(m.imp, values),
        export_kw=_vals(m.exp, values),
        charge_kw=_vals(m.ch, values),
        discharge_kw=_vals(m.dis, values),
        soc_kwh=_vals(m.soc, values),
        flex_kw=flex,
        reserve_up_kw=_vals(m.rup, values),
        reserve_down_kw=_vals(m.rdn, values),
        marginal_value_per_kwh=float(dual0) / float(m.dt),
        shortfall_kw=_vals(m.sup, values) + _vals(m.sdn, values),
    )


def grid_only_plan(data: HemsData) -> HemsPlan:
    """Safe fallback when a solve fails: battery idle, flexible loads as early as possible, the grid
    covers the rest; marginal value = retail if the bid slot imports, else buy-back."""
    h, nf = data.horizon, data.n_flex
    flex = np.zeros((nf, h))
    for f in range(nf):
        owed = float(data.flex_rem_init_kwh[f])
        for t in range(h):
            owed += float(data.flex_new_kwh[f, t])
            flex[f, t] = min(float(data.flex_max_kw[f, t]), owed / data.slot_h)
            owed -= flex[f, t] * data.slot_h
    net_kw = data.net_load_kw + flex.sum(axis=0)
    zeros = np.zeros(h)
    value = data.retail_price_per_kwh[0] if net_kw[0] > 0 else data.buyback_price_per_kwh[0]
    return HemsPlan(
        import_kw=np.maximum(net_kw, 0.0),
        export_kw=np.maximum(-net_kw, 0.0),
        charge_kw=zeros,
        discharge_kw=zeros,
        soc_kwh=np.full(h, data.soc_init_kwh),
        flex_kw=flex,
        reserve_up_kw=zeros,
        reserve_down_kw=zeros,
        marginal_value_per_kwh=float(value),
        fallback=True,
        shortfall_kw=zeros,
    )


def solve_hems(data: HemsData, *, context: str = "") -> HemsPlan:
    """Build, solve (via the project's :func:`solve`) and extract one HEMS LP; raises on failure."""
    m = build_hems_model(data)
    solve(m, context=context or "hems")
    return extract_hems(m)


# --------------------------------------------------------------------------------- compiled fast path
class _Template:
    """The compiled LP of one model structure plus where each mutable Param lands in it."""

    def __init__(self, data: HemsData):
        m = build_hems_model(data)
        info = LinearStandardFormCompiler().write(m, mixed_form=True)
        a = info.A.tocsc()
        self.n_row, self.n_col = a.shape
        self.a_start, self.a_index, self.a_value = a.indptr, a.indices, a.data
        col = {id(v): j for j, v in enumerate(info.columns)}
        row = {id(c): i for i, (c, _) in enumerate(info.rows)}
        self.row_lower = np.array(
            [r if k <= 0 else -highspy.kHighsInf for (_, k), r in zip(info.rows, info.rhs, strict=True)]
        )
        self.row_upper = np.array(
            [r if k >= 0 else highspy.kHighsInf for (_, k), r in zip(info.rows, info.rhs, strict=True)]
        )
        self.col_lower = np.array([-highspy.kHighsInf if v.lb is None else v.lb for v in info.columns])
        self.col_upper = np.array([highspy.kHighsInf if v.ub is None else v.ub for v in info.columns])
        self.cost = np.asarray(info.c.todense()).ravel()
        self.dt = data.slot_h
        self.has_peak = hasattr(m, "peak")

        def cols(var):
            return np.array([col[id(v)] for v in var.values()], dtype=np.int32)

        def rows(con):
            return np.array([row[id(c)] for c in con.values()], dtype=np.int32)

        self.c_imp, self.c_exp, self.c_ch, self.c_dis = cols(m.imp), cols(m.exp), cols(m.ch), cols(m.dis)
        self.c_soc, self.c_rup, self.c_rdn = cols(m.soc), cols(m.rup), cols(m.rdn)
        self.c_sup, self.c_sdn = cols(m.sup), cols(m.sdn)
        self.c_flex, self.c_rem = cols(m.flex), cols(m.rem)  # ordered (f, t), f major
        self.c_peak = np.array([col[id(m.peak)]] if self.has_peak else [], dtype=np.int32)
        self.r_bal, self.r_soc0 = rows(m.balance), rows(m.soc_dyn)[:1]
        self.r_flex = rows(m.flex_dyn)
        self.r_aup, self.r_adn = rows(m.award_up_c), rows(m.award_dn_c)
        self.r_upp, self.r_dnp = rows(m.res_up_p), rows(m.res_dn_p)
        self.r_upe, self.r_dne = rows(m.res_up_e), rows(m.res_dn_e)
        # one index array per kind of update, in the order the vectors are built in CompiledHems
        self.eq_rows = np.concatenate([self.r_bal, self.r_soc0, self.r_flex])
        self.lb_rows = np.concatenate([self.r_aup, self.r_adn])
        self.cost_cols = np.concatenate([self.c_imp, self.c_exp, self.c_rup, self.c_rdn, self.c_soc[-1:]])
        self.bound_cols = np.concatenate([self.c_soc, self.c_flex, self.c_rem, self.c_peak])
        self.inf_lb_rows = np.full(len(self.lb_rows), highspy.kHighsInf)
        # both kinds of rows in one write, in increasing row order: row_set = concat(eq_rows, lb_rows)[row_order]
        self.row_order = np.argsort(np.concatenate([self.eq_rows, self.lb_rows]), kind="stable")
        self.row_set = np.concatenate([self.eq_rows, self.lb_rows])[self.row_order]
        self.r_bal0 = int(self.r_bal[0])

    def battery(self, b: BatteryParams) -> tuple[np.ndarray, ...]:
        """Column and row bounds with this battery's size: p_max bounds ch and dis and caps the reserve power
        rows, soc_min and soc_max bound the reserve energy rows and the SOC (so one template serves every
        battery size with the same efficiencies)."""
        col_upper, row_lower, row_upper = self.col_upper.copy(), self.row_lower.copy(), self.row_upper.copy()
        col_upper[self.c_ch] = col_upper[self.c_dis] = b.p_max_kw
        col_upper[self.c_soc] = b.soc_max_kwh
        row_upper[self.r_upp] = row_upper[self.r_dnp] = b.p_max_kw
        row_lower[self.r_upe] = b.soc_min_kwh
        row_upper[self.r_dne] = b.soc_max_kwh
        return self.col_lower, col_upper, row_lower, row_upper

    def row_updates(self, d: HemsData) -> tuple[np.ndarray, np.ndarray]:
        """Equality rows (balance, soc_dyn[0], flex_dyn) and >= rows (awards) right-hand sides."""
        flex_rhs = d.flex_new_kwh.astype(float).copy()
        if d.n_flex:
            flex_rhs[:, 0] += d.flex_rem_init_kwh
        eq = np.concatenate([d.net_load_kw, [d.soc_init_kwh], flex_rhs.ravel()])
        return eq, np.concatenate([d.reserve_up_award_kw, d.reserve_down_award_kw])

    def row_bounds(self, eq: np.ndarray, lb_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the rows ``row_set`` from :meth:`row_updates`' vectors (equality rows: both
        bounds; >= rows: no upper bound)."""
        lo, hi = self.row_bounds_batch(eq[None, :], lb_rows[None, :])
        return lo[0], hi[0]

    def row_bounds_batch(self, eq: np.ndarray, lb_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`row_bounds` for ``m`` prosumers: arrays (m, n_eq), (m, n_lb) -> (m, n_eq + n_lb) twice."""
        inf = np.broadcast_to(self.inf_lb_rows, lb_rows.shape)
        return (np.concatenate([eq, lb_rows], axis=1)[:, self.row_order],
                np.concatenate([eq, inf], axis=1)[:, self.row_order])

    def cost_updates(self, d: HemsData) -> np.ndarray:
        """Objective coefficients of imp, exp, rup, rdn and the last SOC."""
        return np.concatenate(
            [
                self.dt * d.retail_price_per_kwh,
                -self.dt * d.buyback_price_per_kwh,
                -d.reserve_value_per_kw,
                -d.reserve_value_per_kw,
                [-d.terminal_value_per_kwh],
            ]
        )

    def bound_updates(self, d: HemsData) -> tuple[np.ndarray, np.ndarray]:
        """Column bounds of soc (floor), flex (p_max share), rem (energy still deliverable), peak."""
        nf_h = d.flex_max_kw.size
        lo = np.concatenate([d.soc_floor_kwh, np.zeros(2 * nf_h), [d.peak_so_far_kw] * len(self.c_peak)])
        hi = np.concatenate(
            [
                np.full(len(self.c_soc), d.battery.soc_max_kwh),
                d.flex_max_kw.ravel(),
                d.flex_rem_max_kwh.ravel(),
                [highspy.kHighsInf] * len(self.c_peak),
            ]
        )
        return lo, hi


    # ---- the same vectors for many prosumers of this structure at once (one row each, the same values)
    def row_updates_batch(self, net_load_kw, soc_init_kwh, flex_new_kwh, flex_rem_init_kwh, award_up_kw,
                          award_down_kw) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`row_updates` for ``m`` prosumers: arrays (m, H), (m,), (m, F, H), (m, F), (m, H), (m, H)."""
        m = len(net_load_kw)
        flex_rhs = flex_new_kwh.astype(float).copy()
        if flex_rhs.shape[1]:
            flex_rhs[:, :, 0] += flex_rem_init_kwh
        eq = np.concatenate([net_load_kw, soc_init_kwh[:, None], flex_rhs.reshape(m, -1)], axis=1)
        return eq, np.concatenate([award_up_kw, award_down_kw], axis=1)

    def cost_updates_batch(self, retail_per_kwh, buyback_per_kwh, reserve_value_per_kw,
                           terminal_value_per_kwh) -> np.ndarray:
        """:meth:`cost_updates` for ``m`` prosumers sharing the prices (H,) and the reserve value (H,), each with
        its terminal value (m,)."""
        shared = np.concatenate([self.dt * retail_per_kwh, -self.dt * buyback_per_kwh, -reserve_value_per_kw,
                                 -reserve_value_per_kw])
        m = len(terminal_value_per_kwh)
        return np.concatenate([np.broadcast_to(shared, (m, len(shared))), -terminal_value_per_kwh[:, None]], axis=1)

    def bound_updates_batch(self, soc_floor_kwh, soc_max_kwh, flex_max_kw, flex_rem_max_kwh,
                            peak_so_far_kw) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`bound_updates` for ``m`` prosumers: arrays (m, H), (m,), (m, F, H), (m, F, H), (m,)."""
        m, h = soc_floor_kwh.shape
        nf_h = flex_max_kw.shape[1] * h
        n_peak = len(self.c_peak)
        lo = np.concatenate([soc_floor_kwh, np.zeros((m, 2 * nf_h)), np.repeat(peak_so_far_kw[:, None], n_peak, 1)],
                            axis=1)
        hi = np.concatenate([np.repeat(soc_max_kwh[:, None], len(self.c_soc), 1), flex_max_kw.reshape(m, -1),
                             flex_rem_max_kwh.reshape(m, -1), np.full((m, n_peak), highspy.kHighsInf)], axis=1)
        return lo, hi


_TEMPLATES: dict[tuple, _Template] = {}
_OPTIMAL = highspy.HighsModelStatus.kOptimal
_INFEASIBLE = (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible,
               highspy.HighsModelStatus.kUnbounded)


def _structure_key(d: HemsData) -> tuple:
    """What the compiled matrix depends on; the battery's size enters only bounds (see _Template.battery)."""
    b = d.battery
    return (d.horizon, d.n_flex, d.slot_h, b.eta_charge, b.eta_discharge, d.demand_charge_per_kw)


class CompiledHems:
    """One prosumer's HEMS LP in a persistent ``highspy.Highs``, re-solved warm from the last basis.

    The matrix comes from :func:`build_hems_model` through Pyomo's standard-form compiler; models with
    the same structure (horizon, slot length, battery efficiencies, number of flexible loads, tariff demand
    charge) share it, and each prosumer writes its own battery size into the bounds.
    Termination is checked as in :func:`federates.common.solver.solve`: optimal, or raise.
    """

    def __init__(self, data: HemsData, options: dict | None = None):
        key = _structure_key(data)
        if key not in _TEMPLATES:
            _TEMPLATES[key] = _Template(data)
        self.tpl = tpl = _TEMPLATES[key]
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("presolve", "off")
        for name, val in (options or {}).items():
            self.highs.setOptionValue(name, val)
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = tpl.n_col, tpl.n_row
        lp.col_cost_ = tpl.cost
        lp.col_lower_, lp.col_upper_, lp.row_lower_, lp.row_upper_ = tpl.battery(data.battery)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = tpl.a_start, tpl.a_index, tpl.a_value
        self.highs.passModel(lp)

    def push(self, data: HemsData) -> None:
        """Write ``data`` into the LP's bounds and costs (what ``update_hems_params`` does to Params)."""
        tpl = self.tpl
        row_lo, row_hi = tpl.row_bounds(*tpl.row_updates(data))
        lo, hi = tpl.bound_updates(data)
        self.push_arrays(row_lo, row_hi, tpl.cost_updates(data), lo, hi)

    def push_arrays(self, row_lo: np.ndarray, row_hi: np.ndarray, cost: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray) -> None:
        """Write prepared update vectors (from :meth:`_Template.row_bounds` ... or their batch forms). The rows of
        both kinds go in one call: HiGHS sets each row's bounds and nonbasic status on its own, so one call or
        two leave the same LP and basis."""
        tpl, h = self.tpl, self.highs
        h.changeRowsBounds(len(row_lo), tpl.row_set, row_lo, row_hi)
        h.changeColsCost(len(cost), tpl.cost_cols, cost)
        h.changeColsBounds(len(lo), tpl.bound_cols, lo, hi)

    def run(self, context: object = "") -> tuple[np.ndarray, float]:
        """Re-solve the LP as pushed: (column values, dual of the bid slot's energy balance); raises
        InfeasibleError / SolverError naming ``context`` (anything that prints: it is formatted only then)."""
        h = self.highs
        h.run()
        status = h.getModelStatus()
        if status != _OPTIMAL:
            h.clearSolver()
            where = f" ({context})" if context else ""
            if status in _INFEASIBLE:
                raise InfeasibleError(f"HEMS model{where} is {h.modelStatusToString(status)}")
            raise SolverError(
                f"HiGHS stopped on the HEMS model{where} with status {h.modelStatusToString(status)}"
            )
        sol = h.getSolution()
        return np.fromiter(sol.col_value, np.float64, self.tpl.n_col), sol.row_dual[self.tpl.r_bal0]

    def solve(self, data: HemsData, *, context: str = "") -> HemsPlan:
        """Push ``data``, re-solve and return the plan; raises InfeasibleError / SolverError."""
        self.push(data)
        x, dual0 = self.run(context)
        return self._extract(x, dual0, data.n_flex)

    def _extract(self, x: np.ndarray, dual0: float, n_flex: int) -> HemsPlan:
        tpl = self.tpl
        return HemsPlan(
            import_kw=x[tpl.c_imp],
            export_kw=x[tpl.c_exp],
            charge_kw=x[tpl.c_ch],
            discharge_kw=x[tpl.c_dis],
            soc_kwh=x[tpl.c_soc],
            flex_kw=x[tpl.c_flex].reshape(n_flex, len(tpl.c_soc)),
            reserve_up_kw=x[tpl.c_rup],
            reserve_down_kw=x[tpl.c_rdn],
            marginal_value_per_kwh=float(dual0) / tpl.dt,
            shortfall_kw=x[tpl.c_sup] + x[tpl.c_sdn],
        )
