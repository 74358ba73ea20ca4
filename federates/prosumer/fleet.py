"""The prosumer fleet: the stateful object the (thin) HELICS shell drives. No HELICS here.

Life cycle per 30-min slot ``k`` (slot_s = 1800 s):

* ``plan(t_s, k)``: every prosumer re-solves its HEMS LP for the horizon starting at slot ``k`` and
  returns its :class:`Bid` (P2P buy/sell with limit prices, VPP flexibility, planned injection);
* ``commit_p2p(k, ...)`` / ``commit_reserve(k15, ...)``: cleared P2P trades and reserve awards, honoured
  by every later plan that covers them and by the real-time dispatch;
* ``dispatch(t_s, setpoints)`` every 5 min: realised PV and load (which differ from the forecast) are
  met in real time: the battery follows the plan (P2P position included) plus the VPP's ``delta_p_kw``,
  then absorbs the forecast deviation; the rest goes to the grid. Corrective caps come next, and a
  flexible load is never left short of its energy at its deadline.

Planning rules: the horizon starts at the bid slot; its initial SOC is the real SOC projected along
the current plan to the slot start; the resilience reserve is a floor on the planned SOC (relaxed at the
battery's full charge rate when the real SOC is below it); energy left in the battery at the horizon end
is valued at eta_discharge x the lowest retail price (so the 24 h plan does not dump it); flexible loads
carry the energy still owed in their open window. Forecasts are the realised profiles times a seeded,
slowly varying error (see :func:`federates.prosumer.devices.forecast_error`).

SIGN CONVENTION (project-wide): a net power is positive when it is INJECTED INTO THE DISTRIBUTION
NETWORK by the named element. ``grid_kw`` > 0 = export; ``battery_kw`` > 0 = discharging;
``pv_kw``/``load_kw``/``flex_kw``/``curtailed_kw`` are non-negative magnitudes, so in every record
``grid_kw = pv_kw - curtailed_kw - load_kw - flex_kw + battery_kw``. ``p2p_commit_kw`` follows the same
convention (+ = net SOLD to peers, average kW over the slot), the opposite sign of ``commit_p2p``'s
``net_kwh`` (+ = bought), which is a market quantity, not a power.

Real-time dispatch of one prosumer in the interval [a, b) h of 30-min slot ``k`` (what every element of the
fleet's arrays does; the fleet computes it for all prosumers at once, with numpy, element by element in this
order, so each value is the one these scalar steps give, bit for bit):

1. each flexible load's window opening in [a, b) makes its whole energy owed until its deadline; the load may
   run at most ``most = min(p_max x (share of [a, b) inside the window), owed / (b - a))`` and must run at least
   ``must = min(max(0, owed - p_max x (deadline - b)) / (b - a), most)`` (0 and 0 when no window is open); it
   follows its plan ``plan_flex[k] / (share of slot k inside the window) x (share of [a, b) inside it)`` (0
   when the slot has no window time) kept inside [must, most];
2. ``base = pv - load - sum(flex)``; the battery is asked for ``plan_g[k] + delta_p - base`` when slot ``k``
   is planned (else ``delta_p``), within its limits: charge at most ``min(p_max, max(0, soc_max - soc) /
   (eta_c dt))``, discharge at most ``min(p_max, max(0, soc - floor) eta_d / dt)``;
3. export cap: when ``base + battery`` exceeds it, the excess is absorbed by more charge, then by running the
   flexible loads up to ``most`` (in their order), then by curtailing PV (at most ``pv``);
4. import cap: when ``-grid`` exceeds it, the deficit is covered by more discharge (down to soc_min, the
   resilience floor waived), then by deferring flexible loads down to ``must`` (in their order);
5. booking: ``soc -= dt x (battery / eta_d if battery > 0 else battery x eta_c)``; each load's owed energy
   drops by its power x (b - a) (not below 0); a window closing by ``b`` books what is still owed as unmet
   (when above 1e-7 kWh); ``grid = pv - curtailed - load - sum(flex) + battery``; the peak import is
   ``max(peak, -grid)``. Sums run over a prosumer's flexible loads in their order; ``min``/``max`` keep the
   first argument on ties, as Python's do.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np
import pandas as pd

from federates.common.errors import ConfigError, InfeasibleError, SolverError
from federates.prosumer.bidding import Bid, bids_from, limit_price
from federates.prosumer.devices import (
    FlexLoadConfig,
    Location,
    ProsumerConfig,
    TariffConfig,
    forecast_error,
    load_profile,
    pv_profile,
)
from federates.prosumer.hems import BatteryParams, CompiledHems, HemsData, HemsPlan, grid_only_plan

__all__ = ["Bid", "ProsumerFleet", "Setpoint", "StepRecord"]

logger = logging.getLogger(__name__)
_EPS = 1e-9


@dataclass(frozen=True)
class Setpoint:
    """From the VPP for the next 5-min interval."""

    delta_p_kw: float = 0.0
    """Extra injection requested for ancillary delivery (+ = more export / less import)."""
    max_export_kw: float | None = None
    """Corrective cap on export (over-voltage); None = no cap."""
    max_import_kw: float | None = None
    """Corrective cap on import (under-voltage / overload); None = no cap."""


@dataclass(frozen=True)
class StepRecord:
    """One prosumer, one 5-min interval, what really happened (signs: see the module docstring)."""

    prosumer: str
    pv_kw: float
    load_kw: float
    flex_kw: float
    battery_kw: float
    soc_kwh: float
    grid_kw: float
    curtailed_kw: float
    p2p_commit_kw: float
    reserve_up_kw: float
    reserve_down_kw: float
    delta_p_kw: float
    unmet_flex_kwh: float


# ------------------------------------------------------------------------------- flexible-load windows
def _occurrences(cfg: FlexLoadConfig, from_h: float, to_h: float):
    """(start_h, end_h) of the daily windows that overlap [from_h, to_h)."""
    for day in range(math.floor(from_h / 24.0) - 1, math.floor(to_h / 24.0) + 1):
        start, end = 24.0 * day + cfg.earliest_h, 24.0 * day + cfg.deadline_h
        if start < to_h and end > from_h:
            yield start, end


@functools.lru_cache(maxsize=4096)
def _horizon_windows(cfg_key: tuple, hs_h: float, n: int, dt_h: float):
    """flex_max_kw, flex_new_kwh, rem_max_kwh over ``n`` slots from ``hs_h`` (see :class:`HemsData`)."""
    earliest, deadline, energy, p_max = cfg_key
    cfg = FlexLoadConfig(
        name="x", energy_kwh=energy, earliest_h=earliest, deadline_h=deadline, p_max_kw=p_max
    )
    a = np.round(hs_h + dt_h * np.arange(n), 9)
    b = np.round(a + dt_h, 9)
    flex_max, new, rem_max = np.zeros(n), np.zeros(n), np.zeros(n)
    for start, end in _occurrences(cfg, hs_h, float(b[-1])):
        flex_max += p_max * np.clip(np.minimum(b, end) - np.maximum(a, start), 0.0, None) / dt_h
        if start >= hs_h - _EPS:
            new[int(np.searchsorted(b, start + _EPS))] += energy
        active = (start < b - _EPS) & (b < end - _EPS)
        rem_max[active] = p_max * (end - b[active])
    return flex_max, new, rem_max


def _key(cfg: FlexLoadConfig) -> tuple:
    return (cfg.earliest_h, cfg.deadline_h, cfg.energy_kwh, cfg.p_max_kw)


def _pmin(a, b):
    """Python's ``min(a, b)`` element by element: ``b`` where ``b < a``, else ``a`` (ties and signed zeros too)."""
    return np.where(b < a, b, a)


def _pmax(a, b):
    """Python's ``max(a, b)`` element by element: ``b`` where ``b > a``, else ``a``."""
    return np.where(b > a, b, a)


def _row_sums(a: np.ndarray) -> np.ndarray:
    """Python's ``sum()`` of each row of ``a`` (n, F), in column order from 0 (padding zeros change nothing: a
    partial sum from +0 is never -0)."""
    total = np.zeros(a.shape[0])
    for f in range(a.shape[1]):
        total = total + a[:, f]
    return total


def _days(from_h: float, to_h: float) -> range:
    """The days :func:`_occurrences` looks at for [from_h, to_h)."""
    return range(math.floor(from_h / 24.0) - 1, math.floor(to_h / 24.0) + 1)


@dataclass(frozen=True)
class _FlexTable:
    """The flexible loads of a fleet as (prosumer, position) arrays (n, F), F the most loads of one prosumer;
    positions past a prosumer's own loads are padding (``has`` False, zeros)."""

    has: np.ndarray
    earliest_h: np.ndarray
    deadline_h: np.ndarray
    energy_kwh: np.ndarray
    p_max_kw: np.ndarray
    keys: tuple[tuple, ...]
    """The distinct window shapes (:func:`_key`); ``key_id`` (n, F) points into it (-1 for padding)."""
    key_id: np.ndarray

    @classmethod
    def of(cls, prosumers: Sequence[ProsumerConfig]) -> _FlexTable:
        n, width = len(prosumers), max((len(p.flex_loads) for p in prosumers), default=0)
        has = np.zeros((n, width), bool)
        cols = {k: np.zeros((n, width)) for k in ("earliest_h", "deadline_h", "energy_kwh", "p_max_kw")}
        keys: dict[tuple, int] = {}
        key_id = np.full((n, width), -1)
        for i, p in enumerate(prosumers):
            for f, cfg in enumerate(p.flex_loads):
                has[i, f] = True
                for k, arr in cols.items():
                    arr[i, f] = getattr(cfg, k)
                key_id[i, f] = keys.setdefault(_key(cfg), len(keys))
        return cls(has=has, keys=tuple(keys), key_id=key_id, **cols)

    @property
    def width(self) -> int:
        return self.has.shape[1]

    def overlap_h(self, a_h: float, b_h: float) -> np.ndarray:
        """Hours of [a_h, b_h) inside each load's windows (the scalar ``_overlap_h`` of every element)."""
        total = np.zeros(self.has.shape)
        for day in _days(a_h, b_h):
            start, end = 24.0 * day + self.earliest_h, 24.0 * day + self.deadline_h
            term = _pmax(0.0, _pmin(b_h, end) - _pmax(a_h, start))
            total = total + np.where((start < b_h) & (end > a_h), term, 0.0)
        return total


@dataclass
class _Prosumer:
    """A prosumer's static data, its LP and views of its rows of the fleet's plans (real-time state such as the
    SOC lives in the fleet's arrays)."""

    cfg: ProsumerConfig
    battery: BatteryParams
    floor_kwh: float
    solver: CompiledHems | None = None
    plan_b_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    plan_g_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    plan_flex_kw: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    planned: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def _battery_params(cfg: ProsumerConfig) -> tuple[BatteryParams, float, float]:
    b = cfg.battery
    if b is None:
        return BatteryParams(), 0.0, 0.0
    cap = b.capacity_kwh
    params = BatteryParams(
        cap, b.p_max_kw, b.eta_charge, b.eta_discharge, b.soc_min_frac * cap, b.soc_max_frac * cap
    )
    return params, b.floor_frac * cap, b.soc_init_frac * cap


def _check_fleet(
    prosumers: Sequence[ProsumerConfig], n_steps: int, step_s: int, slot_s: int, horizon_slots: int
) -> None:
    problems = []
    names = [p.name for p in prosumers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        problems.append(f"prosumer names {dup} are repeated; make them unique")
    if n_steps <= 0:
        problems.append(f"n_steps={n_steps} must be positive")
    if step_s <= 0 or slot_s % (2 * step_s):
        problems.append(f"slot_s={slot_s} must be an even multiple of step_s={step_s} (two 15-min halves)")
    if horizon_slots < 1:
        problems.append(f"horizon_slots={horizon_slots} must be at least 1")
    if problems:
        raise ConfigError(problems, source="ProsumerFleet")


class _SolveContext(NamedTuple):
    """Which LP a solve is (formatted only when it fails)."""

    prosumer: str
    slot: int
    t_s: float

    def __str__(self) -> str:
        return f"prosumer {self.prosumer} slot {self.slot} at t={self.t_s:g} s"


@dataclass
class _LpInputs:
    """The HEMS LP inputs of every prosumer of a fleet for one decision (rows = prosumers; see HemsData)."""

    fleet: ProsumerFleet
    net_load_kw: np.ndarray
    retail_price_per_kwh: np.ndarray
    buyback_price_per_kwh: np.ndarray
    soc_init_kwh: np.ndarray
    soc_floor_kwh: np.ndarray
    reserve_up_award_kw: np.ndarray
    reserve_down_award_kw: np.ndarray
    reserve_value_per_kw: np.ndarray
    flex_max_kw: np.ndarray       # (n, F, H), F: the fleet's _FlexTable width; prosumer i uses [i, :n_flex_i]
    flex_new_kwh: np.ndarray      # (n, F, H)
    flex_rem_max_kwh: np.ndarray  # (n, F, H)
    flex_rem_init_kwh: np.ndarray  # (n, F)
    terminal_value_per_kwh: np.ndarray
    peak_so_far_kw: np.ndarray

    def data(self, i: int) -> HemsData:
        """Prosumer ``i``'s LP data."""
        fl = self.fleet
        nf = int(fl._n_flex[i])
        return HemsData(
            slot_h=fl.slot_h,
            battery=fl._states[i].battery,
            net_load_kw=self.net_load_kw[i],
            retail_price_per_kwh=self.retail_price_per_kwh,
            buyback_price_per_kwh=self.buyback_price_per_kwh,
            soc_init_kwh=float(self.soc_init_kwh[i]),
            soc_floor_kwh=self.soc_floor_kwh[i],
            reserve_up_award_kw=self.reserve_up_award_kw[i],
            reserve_down_award_kw=self.reserve_down_award_kw[i],
            reserve_value_per_kw=self.reserve_value_per_kw,
            flex_max_kw=self.flex_max_kw[i, :nf],
            flex_new_kwh=self.flex_new_kwh[i, :nf],
            flex_rem_max_kwh=self.flex_rem_max_kwh[i, :nf],
            flex_rem_init_kwh=self.flex_rem_init_kwh[i, :nf],
            terminal_value_per_kwh=float(self.terminal_value_per_kwh[i]),
            demand_charge_per_kw=fl.tariff.demand_charge_per_kw,
            peak_so_far_kw=float(self.peak_so_far_kw[i]),
        )

    def updates(self, tpl, rows: np.ndarray) -> dict:
        """The vectors :meth:`CompiledHems.push_arrays` writes, for the prosumers ``rows`` sharing ``tpl``
        (the same values as :meth:`CompiledHems.push` of each one's :meth:`data`)."""
        nf = int(self.fleet._n_flex[rows[0]])
        fmax, new, rmax = (a[rows, :nf] for a in (self.flex_max_kw, self.flex_new_kwh, self.flex_rem_max_kwh))
        rem0 = self.flex_rem_init_kwh[rows, :nf]
        eq, lb = tpl.row_updates_batch(self.net_load_kw[rows], self.soc_init_kwh[rows], new, rem0,
                                       self.reserve_up_award_kw[rows], self.reserve_down_award_kw[rows])
        cost = tpl.cost_updates_batch(self.retail_price_per_kwh, self.buyback_price_per_kwh,
                                      self.reserve_value_per_kw, self.terminal_value_per_kwh[rows])
        lo, hi = tpl.bound_updates_batch(self.soc_floor_kwh[rows], self.fleet._battery["soc_max_kwh"][rows], fmax,
                                         rmax, self.peak_so_far_kw[rows])
        row_lo, row_hi = tpl.row_bounds_batch(eq, lb)
        return {"row": {i: j for j, i in enumerate(rows.tolist())}, "row_lo": row_lo, "row_hi": row_hi, "cost": cost,
                "lo": lo, "hi": hi}


class ProsumerFleet:
    """All prosumers of one VPP: profiles, HEMS plans, commitments and real-time dispatch.

    ``p2p_enabled`` / ``vpp_enabled`` = False (a top-down run) make every bid carry zero P2P quantities /
    zero flexibility; planning itself never assumes a P2P price (it uses the utility tariff).
    ``reserve_value_per_kw`` rewards reserve headroom in the bid slot (only when ``vpp_enabled``).
    ``highs_options`` are passed to every HiGHS instance (e.g. a time limit).
    """

    def __init__(
        self,
        prosumers: Sequence[ProsumerConfig],
        tariff: TariffConfig,
        location: Location,
        start: datetime,
        *,
        n_steps: int,
        step_s: int = 300,
        slot_s: int = 1800,
        horizon_slots: int = 48,
        seed: int = 0,
        p2p_enabled: bool = True,
        vpp_enabled: bool = True,
        reserve_value_per_kw: float = 0.005,
        highs_options: Mapping[str, object] | None = None,
    ):
        _check_fleet(prosumers, n_steps, step_s, slot_s, horizon_slots)
        self.tariff, self.location, self.start = tariff, location, start
        self.n_steps, self.step_s, self.slot_s, self.horizon_slots = n_steps, step_s, slot_s, horizon_slots
        self.p2p_enabled, self.vpp_enabled = p2p_enabled, vpp_enabled
        self.reserve_value_per_kw = reserve_value_per_kw if vpp_enabled else 0.0
        self.highs_options = dict(highs_options or {})
        self.fallbacks = 0
        self.names = [p.name for p in prosumers]
        ts = pd.Timestamp(start)
        self.h0 = ts.hour + ts.minute / 60.0 + ts.second / 3600.0
        self.slot_h, self.step_h = slot_s / 3600.0, step_s / 3600.0
        self.steps_per_slot = slot_s // step_s
        self.n_slots = math.ceil(n_steps / self.steps_per_slot) + horizon_slots + 1
        total = self.n_slots * self.steps_per_slot
        hours = self.h0 + self.step_h * np.arange(total)
        retail = tariff.retail_array(hours).reshape(self.n_slots, -1).mean(axis=1)
        self.retail_slot = retail
        self.export_slot = tariff.export_price_array(hours).reshape(self.n_slots, -1).mean(axis=1)
        self.terminal_retail = min(p.price_per_kwh for p in tariff.retail_tou)
        self._generate_profiles(prosumers, seed, total)
        n = len(prosumers)
        self.p2p_kwh = np.zeros((n, self.n_slots))
        self.award_up_kw = np.zeros((n, 2 * self.n_slots))
        self.award_dn_kw = np.zeros((n, 2 * self.n_slots))
        self._pos = {name: i for i, name in enumerate(self.names)}
        self._flex = _FlexTable.of(prosumers)
        self._n_flex = self._flex.has.sum(axis=1)
        self._new_plans()
        self._states = [self._new_state(p, i) for i, p in enumerate(prosumers)]
        bats = [st.battery for st in self._states]
        keys = ("capacity_kwh", "p_max_kw", "eta_charge", "eta_discharge", "soc_min_kwh", "soc_max_kwh")
        self._battery = {k: np.array([getattr(b, k) for b in bats], dtype=float) for k in keys}
        self._battery["floor_kwh"] = np.array([st.floor_kwh for st in self._states], dtype=float)
        self._next_step = 0

    def _new_plans(self) -> None:
        """Every prosumer's current plan over the run and its real-time state, one row each (a prosumer's
        :class:`_Prosumer` holds views of its rows of the plans).

        State: ``soc_kwh`` and ``peak_import_kw`` (n,); per flexible load (n, F), see :class:`_FlexTable`: the
        energy still owed in its open window ``flex_rem_kwh`` and that window's deadline ``flex_end_h`` (NaN when
        no window is open)."""
        n, width = len(self.names), self._flex.width
        self.plan_b_kw = np.zeros((n, self.n_slots))   # battery, + = discharging
        self.plan_g_kw = np.zeros((n, self.n_slots))   # net injection, P2P position included
        self.plan_flex_kw = np.zeros((n, width, self.n_slots))
        self.planned = np.zeros((n, self.n_slots), bool)
        self.soc_kwh = np.zeros(n)
        self.peak_import_kw = np.zeros(n)
        self.flex_rem_kwh = np.zeros((n, width))
        self.flex_end_h = np.full((n, width), np.nan)

    # ------------------------------------------------------------------------------------ set-up
    def _generate_profiles(self, prosumers: Sequence[ProsumerConfig], seed: int, total: int) -> None:
        n = len(prosumers)
        self.pv_kw, self.load_kw = np.zeros((n, total)), np.zeros((n, total))
        fc_pv, fc_load = np.zeros((n, total)), np.zeros((n, total))
        for i, p in enumerate(prosumers):
            s_pv, s_load, s_fpv, s_fload = (
                int(c.generate_state(1)[0])
                for c in np.random.SeedSequence([seed, zlib.crc32(p.name.encode())]).spawn(4)
            )
            self.load_kw[i] = load_profile(p.load, self.start, total, self.step_s, s_load, self.n_steps)
            fc_load[i] = self.load_kw[i] * forecast_error(
                total, self.step_s, p.load.forecast_error_std, s_fload
            )
            if p.pv is not None:
                self.pv_kw[i] = pv_profile(p.pv, self.location, self.start, total, self.step_s, s_pv, self.n_steps)
                fc_pv[i] = self.pv_kw[i] * forecast_error(total, self.step_s, p.pv.forecast_error_std, s_fpv)
        self.forecast_pv_kw, self.forecast_load_kw = fc_pv, fc_load
        self.forecast_net_slot_kw = (fc_load - fc_pv).reshape(n, self.n_slots, -1).mean(axis=2)

    def _new_state(self, cfg: ProsumerConfig, i: int) -> _Prosumer:
        """Prosumer ``i``'s :class:`_Prosumer`; sets its initial SOC and flexible-load state in the arrays."""
        battery, floor_kwh, self.soc_kwh[i] = _battery_params(cfg)
        for f, fl in enumerate(cfg.flex_loads):  # a window already open at the start owes its pro-rated share
            for start, end in _occurrences(fl, self.h0, self.h0 + _EPS):
                if start < self.h0 - _EPS:
                    self.flex_rem_kwh[i, f] = fl.energy_kwh * (end - self.h0) / (end - start)
                    self.flex_end_h[i, f] = end
        return _Prosumer(
            cfg=cfg,
            battery=battery,
            floor_kwh=floor_kwh,
            plan_b_kw=self.plan_b_kw[i],
            plan_g_kw=self.plan_g_kw[i],
            plan_flex_kw=self.plan_flex_kw[i, : len(cfg.flex_loads)],
            planned=self.planned[i],
        )

    def topdown_twin(self) -> ProsumerFleet:
        """The same prosumers (devices, preferences, realised and forecast weather and loads, seed) as a
        top-down fleet: utility tariff only, no P2P, no VPP. Driven like a top-down run (``plan`` at every
        Layer I bid gate, ``dispatch`` with no setpoints), it reproduces that run's steps, so a market run can
        settle each member against its own top-down bill (the VPP's guarantee, :mod:`runner.ledger`).
        Profiles are shared with this fleet (read-only); states, plans, solvers and commitments are fresh."""
        if self._next_step or self.planned.any():
            raise ValueError("make the top-down twin before the fleet plans or dispatches")
        twin = copy.copy(self)
        twin.p2p_enabled = twin.vpp_enabled = False
        twin.reserve_value_per_kw, twin.fallbacks = 0.0, 0
        twin.p2p_kwh = np.zeros_like(self.p2p_kwh)
        twin.award_up_kw, twin.award_dn_kw = np.zeros_like(self.award_up_kw), np.zeros_like(self.award_dn_kw)
        twin._new_plans()
        twin._states = [twin._new_state(st.cfg, i) for i, st in enumerate(self._states)]
        return twin

    # ------------------------------------------------------------------------------------ planning
    def plan(self, t_s: float, slot: int) -> list[Bid]:
        """The 30-min decision for slot ``slot`` ([slot*slot_s, (slot+1)*slot_s) s), made at time ``t_s``.

        The LP inputs of all prosumers are prepared at once (:class:`_LpInputs`, numpy over the fleet), written
        into each prosumer's persistent LP and solved; solutions are read back per LP structure at once."""
        if not 0 <= slot <= self.n_slots - self.horizon_slots:
            raise ValueError(f"slot {slot} is outside the run (0..{self.n_slots - self.horizon_slots})")
        inp = self._lp_inputs(t_s, slot)
        fallback: dict[int, HemsPlan] = {}
        solved: dict[int, tuple[np.ndarray, float]] = {}
        for i, st in enumerate(self._states):
            if st.solver is None:
                try:
                    st.solver = CompiledHems(inp.data(i), self.highs_options)
                except (InfeasibleError, SolverError) as exc:
                    fallback[i] = self._fallback(inp.data(i), exc)
        groups = self._groups()
        updates = {id(tpl): inp.updates(tpl, rows) for tpl, rows in groups.items()}
        for i, st in enumerate(self._states):
            if i in fallback:
                continue
            upd = updates[id(st.solver.tpl)]
            j = upd["row"][i]
            try:
                st.solver.push_arrays(upd["row_lo"][j], upd["row_hi"][j], upd["cost"][j], upd["lo"][j], upd["hi"][j])
                solved[i] = st.solver.run(_SolveContext(st.cfg.name, slot, t_s))
            except (InfeasibleError, SolverError) as exc:
                fallback[i] = self._fallback(inp.data(i), exc)
        first = self._store_solutions(slot, solved, groups)  # import, export, reserve up, down, marginal value
        for i, plan in fallback.items():
            self._store_plan(i, self._states[i], slot, plan)
            first[:, i] = (plan.import_kw[0], plan.export_kw[0], plan.reserve_up_kw[0], plan.reserve_down_kw[0],
                           plan.marginal_value_per_kwh)
        value = limit_price(first[4], float(self.export_slot[slot]), float(self.retail_slot[slot]))
        is_fallback = np.zeros(len(self.names), bool)
        is_fallback[list(fallback)] = True
        return bids_from(self.names, slot, *first[:4], value, is_fallback, slot_h=self.slot_h,
                         p2p_buy_kw=self.p2p_kwh[:, slot] / self.slot_h, p2p_enabled=self.p2p_enabled,
                         vpp_enabled=self.vpp_enabled)

    def hems_inputs(self, t_s: float, slot: int) -> list[HemsData]:
        """The LP data each prosumer would solve for ``plan(t_s, slot)`` (for benchmarks and inspection)."""
        inp = self._lp_inputs(t_s, slot)
        return [inp.data(i) for i in range(len(self._states))]

    def _fallback(self, data: HemsData, exc: Exception) -> HemsPlan:
        self.fallbacks += 1
        logger.warning("HEMS solve failed, using the grid-only plan: %s", exc)
        return grid_only_plan(data)

    def _groups(self) -> dict:
        """Prosumers with a compiled LP, by LP structure (template): template -> row indices."""
        groups: dict = {}
        for i, st in enumerate(self._states):
            if st.solver is not None:
                groups.setdefault(st.solver.tpl, []).append(i)
        return {tpl: np.array(rows) for tpl, rows in groups.items()}

    def _store_solutions(self, slot: int, solved: dict[int, tuple[np.ndarray, float]],
                         groups: dict) -> np.ndarray:
        """Keep each solved LP's plan over the horizon; return what the bids need from its first slot, (5, n):
        import, export, reserve up, reserve down, marginal value (zeros for the unsolved; ``groups``:
        :meth:`_groups`)."""
        s = slice(slot, slot + self.horizon_slots)
        first = np.zeros((5, len(self.names)))
        for tpl, rows in groups.items():
            rows = [i for i in rows.tolist() if i in solved]
            if not rows:
                continue
            x = np.array([solved[i][0] for i in rows])
            imp, exp = x[:, tpl.c_imp], x[:, tpl.c_exp]
            self.plan_b_kw[rows, s] = x[:, tpl.c_dis] - x[:, tpl.c_ch]
            self.plan_g_kw[rows, s] = exp - imp - self.p2p_kwh[rows, s] / self.slot_h
            self.planned[rows, s] = True
            nf = int(self._n_flex[rows[0]])
            if nf:
                self.plan_flex_kw[rows, :nf, s] = x[:, tpl.c_flex].reshape(len(rows), nf, -1)
            lam = np.array([solved[i][1] for i in rows], dtype=float) / tpl.dt
            first[:, rows] = imp[:, 0], exp[:, 0], x[:, tpl.c_rup[0]], x[:, tpl.c_rdn[0]], lam
        return first

    def _store_plan(self, i: int, st: _Prosumer, slot: int, plan: HemsPlan) -> None:
        s = slice(slot, slot + self.horizon_slots)
        st.plan_b_kw[s] = plan.battery_kw
        st.plan_g_kw[s] = plan.export_kw - plan.import_kw - self.p2p_kwh[i, s] / self.slot_h
        st.plan_flex_kw[:, s] = plan.flex_kw
        st.planned[s] = True

    def _project_soc(self, t_s: float, hs_s: float) -> np.ndarray:
        """Every prosumer's SOC expected at ``hs_s`` if its current plan is followed from ``t_s``."""
        b = self._battery
        soc = self.soc_kwh
        k = int(t_s // self.slot_s)
        while k * self.slot_s < hs_s:
            span_h = (min((k + 1) * self.slot_s, hs_s) - max(k * self.slot_s, t_s)) / 3600.0
            p = self.plan_b_kw[:, k] if span_h > 0 else np.zeros(len(soc))
            soc = soc - span_h * np.where(p > 0, p / b["eta_discharge"], p * b["eta_charge"])
            k += 1
        return np.clip(soc, b["soc_min_kwh"], b["soc_max_kwh"])

    def _soc_floor(self, soc0: np.ndarray) -> np.ndarray:
        b, h = self._battery, self.horizon_slots
        reach = soc0[:, None] + (b["p_max_kw"] * b["eta_charge"] * self.slot_h)[:, None] * np.arange(1, h + 1)
        return np.maximum(b["soc_min_kwh"][:, None], np.minimum(b["floor_kwh"][:, None], reach))

    def _flex_data(self, t_s: float, slot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every flexible load's LP data over the horizon (flex_max_kw, flex_new_kwh, flex_rem_max_kwh: (n, F, H);
        flex_rem_init_kwh: (n, F); padding zeros; see :class:`HemsData`): the windows' shapes, and the energy
        still owed at the horizon start by a window open across it (what real time still owes minus what the
        current plan runs until then, within what the rest of the window can take)."""
        fx, h, dt = self._flex, self.horizon_slots, self.slot_h
        now_h, hs_h = self.h0 + t_s / 3600.0, self.h0 + slot * dt
        windows = np.zeros((len(fx.keys) + 1, 3, h))  # the last row for padding (key_id -1)
        for u, key in enumerate(fx.keys):
            windows[u] = _horizon_windows(key, round(hs_h, 9), h, dt)
        per_load = windows[fx.key_id]
        rem0 = np.zeros(fx.has.shape)
        k_now = int(t_s // self.slot_s)
        for day in _days(hs_h, hs_h + _EPS):
            start, end = 24.0 * day + fx.earliest_h, 24.0 * day + fx.deadline_h
            across = fx.has & (start < hs_h + _EPS) & (end > hs_h) & (start < hs_h - _EPS)
            if across.any():  # window open across the horizon start
                owed = np.where(self.flex_end_h == end, self.flex_rem_kwh, fx.energy_kwh)
                ahead = self.plan_flex_kw[:, :, k_now] * _pmax(0.0, hs_h - _pmax(now_h, start))
                rem0 = np.where(across, np.clip(owed - ahead, 0.0, fx.p_max_kw * (end - hs_h)), rem0)
        return per_load[:, :, 0], per_load[:, :, 1], per_load[:, :, 2], rem0

    def _lp_inputs(self, t_s: float, slot: int) -> _LpInputs:
        h, n = self.horizon_slots, len(self._states)
        s = slice(slot, slot + h)
        soc0 = self._project_soc(t_s, slot * self.slot_s)
        q = slice(2 * slot, 2 * (slot + h))
        reward = np.zeros(h)
        reward[0] = self.reserve_value_per_kw
        b = self._battery
        fmax, new, rmax, rem0 = self._flex_data(t_s, slot)
        return _LpInputs(
            fleet=self,
            net_load_kw=self.forecast_net_slot_kw[:, s] - self.p2p_kwh[:, s] / self.slot_h,
            retail_price_per_kwh=self.retail_slot[s],
            buyback_price_per_kwh=self.export_slot[s],
            soc_init_kwh=soc0,
            soc_floor_kwh=self._soc_floor(soc0),
            reserve_up_award_kw=self.award_up_kw[:, q].reshape(n, h, 2).max(axis=2),
            reserve_down_award_kw=self.award_dn_kw[:, q].reshape(n, h, 2).max(axis=2),
            reserve_value_per_kw=reward,
            flex_max_kw=fmax,
            flex_new_kwh=new,
            flex_rem_max_kwh=rmax,
            flex_rem_init_kwh=rem0,
            terminal_value_per_kwh=np.where(b["p_max_kw"] != 0, b["eta_discharge"] * self.terminal_retail, 0.0),
            peak_so_far_kw=self.peak_import_kw.copy(),
        )

    # --------------------------------------------------------------------------------- commitments
    def _index(self, name: str) -> int:
        try:
            return self._pos[name]
        except KeyError:
            raise ConfigError(f"unknown prosumer {name!r}; known: {self.names[:5]}...") from None

    def commit_p2p(self, slot: int, net_kwh: Mapping[str, float]) -> None:
        """Cleared P2P energy for ``slot`` (kWh, + = bought from peers, - = sold); replaces earlier values."""
        for name, e in net_kwh.items():
            self.p2p_kwh[self._index(name), slot] = float(e)

    def commit_reserve(self, slot15: int, up_kw: Mapping[str, float], down_kw: Mapping[str, float]) -> None:
        """Reserve awarded for 15-min slot ``slot15`` (kW, >= 0); replaces earlier values."""
        for name, v in up_kw.items():
            self.award_up_kw[self._index(name), slot15] = float(v)
        for name, v in down_kw.items():
            self.award_dn_kw[self._index(name), slot15] = float(v)

    # ------------------------------------------------------------------------------------ dispatch
    def dispatch(self, t_s: float, setpoints: Mapping[str, Setpoint]) -> list[StepRecord]:
        """Real time for [t_s, t_s + step_s): returns one record per prosumer (intervals skipped by
        the caller are first run with no setpoints)."""
        cols = self.dispatch_columns(t_s, setpoints)
        return [StepRecord(*row) for row in zip(self.names, *(cols[k].tolist() for k in _RECORD_COLUMNS),
                                                       strict=True)]

    def dispatch_columns(self, t_s: float, setpoints: Mapping[str, Setpoint]) -> dict[str, np.ndarray]:
        """:meth:`dispatch` as columns: every :class:`StepRecord` field after ``prosumer`` as an array (n,) in the
        order of ``names`` (the same values; no record objects to build for a large fleet)."""
        step = int(round(t_s / self.step_s))
        if step < self._next_step or step >= self.n_steps:
            raise ValueError(
                f"dispatch at t={t_s} s: expected step {self._next_step} "
                f"(t={self._next_step * self.step_s} s) up to {self.n_steps - 1}"
            )
        while self._next_step < step:
            self._dispatch_step(self._next_step, {})
        return self._dispatch_step(step, setpoints)

    def _dispatch_step(self, step: int, setpoints: Mapping[str, Setpoint]) -> dict[str, np.ndarray]:
        self._next_step = step + 1
        cols = self._dispatch_arrays(step, setpoints)
        return {k: np.array(cols[k]) for k in _RECORD_COLUMNS}  # copies: the caller may keep them

    def _setpoint_arrays(self, setpoints: Mapping[str, Setpoint]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """delta_p_kw, max_export_kw, max_import_kw per prosumer (0 / NaN = no cap when it has no setpoint)."""
        n = len(self.names)
        delta, cap_exp, cap_imp = np.zeros(n), np.full(n, np.nan), np.full(n, np.nan)
        for name, sp in setpoints.items():
            i = self._pos.get(name)
            if i is None:
                continue
            delta[i] = sp.delta_p_kw
            if sp.max_export_kw is not None:
                cap_exp[i] = sp.max_export_kw
            if sp.max_import_kw is not None:
                cap_imp[i] = sp.max_import_kw
        return delta, cap_exp, cap_imp

    def _dispatch_arrays(self, step: int, setpoints: Mapping[str, Setpoint]) -> dict[str, np.ndarray]:
        """Every prosumer's real time in interval ``step`` (the steps of the module docstring); updates the state
        and returns the recorded columns (:data:`_RECORD_COLUMNS`), one element per prosumer."""
        delta, cap_exp, cap_imp = self._setpoint_arrays(setpoints)
        k = step // self.steps_per_slot
        a_h = self.h0 + step * self.step_h
        b_h = a_h + self.step_h
        pv, load = self.pv_kw[:, step], self.load_kw[:, step]
        flex, must, most = self._flex_plan(k, a_h, b_h)
        base = pv - load - _row_sums(flex)
        b_req = np.where(self.planned[:, k], self.plan_g_kw[:, k] + delta - base, delta)
        ch_max, dis_max = self._battery_limits(self._battery["floor_kwh"])
        bat = _pmin(_pmax(b_req, -ch_max), dis_max)
        curt = np.zeros(len(pv))
        capped = base + bat > cap_exp  # False where there is no cap (NaN)
        if capped.any():
            bat, curt = self._relieve_export(capped, pv, base + bat - cap_exp, bat, ch_max, flex, most)
        grid = pv - curt - load - _row_sums(flex) + bat
        capped = -grid > cap_imp
        if capped.any():
            _, dis_emergency = self._battery_limits(self._battery["soc_min_kwh"])
            bat = self._relieve_import(capped, -grid - cap_imp, bat, dis_emergency, flex, must)
        cols = self._book(a_h, b_h, pv, load, curt, flex, bat)
        cols["p2p_commit_kw"] = -self.p2p_kwh[:, k] / self.slot_h
        slot15 = step // (self.steps_per_slot // 2)
        cols["reserve_up_kw"], cols["reserve_down_kw"] = self.award_up_kw[:, slot15], self.award_dn_kw[:, slot15]
        cols["delta_p_kw"] = delta
        return cols

    def headroom_kw(self, battery_kw: Mapping[str, float]) -> dict[str, tuple[float, float]]:
        """Real-time flexibility for the next interval, per prosumer: (up kW, down kW) that the battery could
        add to its current output ``battery_kw`` (+ = discharging) at the current SOC (meter readings for the
        VPP: up = more discharge, down = more charge, SOC kept within [resilience floor, soc_max])."""
        b = np.array([battery_kw.get(name, 0.0) for name in self.names], dtype=float)
        up, down = self.headroom_arrays(b)
        return dict(zip(self.names, zip(up.tolist(), down.tolist(), strict=True), strict=True))

    def headroom_arrays(self, battery_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`headroom_kw` for every prosumer in fleet order, ``battery_kw`` an array (n,)."""
        ch_max, dis_max = self._battery_limits(self._battery["floor_kwh"])
        return _pmax(dis_max - battery_kw, 0.0), _pmax(ch_max + battery_kw, 0.0)

    def _battery_limits(self, lo_kwh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(max charge kW, max discharge kW) of every battery this interval, SOC kept in [lo_kwh, soc_max]."""
        b, dt, soc = self._battery, self.step_h, self.soc_kwh
        ch = _pmin(b["p_max_kw"], _pmax(0.0, b["soc_max_kwh"] - soc) / (b["eta_charge"] * dt))
        dis = _pmin(b["p_max_kw"], _pmax(0.0, soc - lo_kwh) * b["eta_discharge"] / dt)
        return ch, dis

    def _open_windows(self, a_h: float, b_h: float) -> None:
        """A window that starts in [a_h, b_h) makes its load owe its whole energy until its deadline."""
        fx = self._flex
        for day in _days(a_h, b_h):
            start, end = 24.0 * day + fx.earliest_h, 24.0 * day + fx.deadline_h
            opens = fx.has & (start < b_h) & (end > a_h) & (a_h - _EPS <= start) & (start < b_h - _EPS)
            self.flex_rem_kwh = np.where(opens, fx.energy_kwh, self.flex_rem_kwh)
            self.flex_end_h = np.where(opens, end, self.flex_end_h)

    def _flex_plan(self, k: int, a_h: float, b_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(planned, must-run, most) kW of every flexible load in [a_h, b_h) of slot ``k``, (n, F) each."""
        fx = self._flex
        self._open_windows(a_h, b_h)
        dt_h, p, rem, end_h = b_h - a_h, fx.p_max_kw, self.flex_rem_kwh, self.flex_end_h
        inside_h = fx.overlap_h(a_h, b_h)
        most = _pmin(p * inside_h / dt_h, rem / dt_h)
        must = _pmax(0.0, rem - p * _pmax(0.0, end_h - b_h)) / dt_h
        is_open = ~np.isnan(end_h)
        lo, hi = np.where(is_open, _pmin(must, most), 0.0), np.where(is_open, most, 0.0)
        slot_a = self.h0 + k * self.slot_h
        share = fx.overlap_h(slot_a, slot_a + self.slot_h) / self.slot_h
        with np.errstate(divide="ignore", invalid="ignore"):
            target = np.where(share != 0.0, self.plan_flex_kw[:, :, k] / share * (inside_h / (b_h - a_h)), 0.0)
        return _pmin(_pmax(target, lo), hi), lo, hi

    def _relieve_export(self, rows: np.ndarray, pv: np.ndarray, excess: np.ndarray, bat: np.ndarray,
                        ch_max: np.ndarray, flex: np.ndarray, most: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Over-voltage in ``rows``: charge the battery, then pull flexible load forward (``flex`` updated in
        place), then curtail PV; returns (battery, curtailed) kW."""
        more_ch = _pmin(excess, bat + ch_max)
        relieved, excess = bat - more_ch, excess - more_ch
        for f in range(flex.shape[1]):
            on = rows & self._flex.has[:, f]
            extra = _pmin(excess, most[:, f] - flex[:, f])
            flex[:, f] = np.where(on, flex[:, f] + extra, flex[:, f])
            excess = np.where(on, excess - extra, excess)
        return np.where(rows, relieved, bat), np.where(rows, _pmin(_pmax(excess, 0.0), pv), 0.0)

    def _relieve_import(self, rows: np.ndarray, deficit: np.ndarray, bat: np.ndarray, dis_max: np.ndarray,
                        flex: np.ndarray, must: np.ndarray) -> np.ndarray:
        """Under-voltage/overload in ``rows``: discharge (down to soc_min), then defer flexible load to its
        must-run (``flex`` updated in place); returns the battery kW."""
        more_dis = _pmax(0.0, _pmin(deficit, dis_max - bat))
        relieved, deficit = bat + more_dis, deficit - more_dis
        for f in range(flex.shape[1]):
            on = rows & self._flex.has[:, f]
            cut = _pmax(0.0, _pmin(deficit, flex[:, f] - must[:, f]))
            flex[:, f] = np.where(on, flex[:, f] - cut, flex[:, f])
            deficit = np.where(on, deficit - cut, deficit)
        return np.where(rows, relieved, bat)

    def _book(self, a_h: float, b_h: float, pv: np.ndarray, load: np.ndarray, curt: np.ndarray, flex: np.ndarray,
              bat: np.ndarray) -> dict[str, np.ndarray]:
        """Apply the decision to the state (SOC, flexible energy owed, peak import); return the recorded
        columns it gives."""
        b = self._battery
        self.soc_kwh = self.soc_kwh - self.step_h * np.where(bat > 0, bat / b["eta_discharge"], bat * b["eta_charge"])
        rem = _pmax(0.0, self.flex_rem_kwh - flex * (b_h - a_h))
        closes = self.flex_end_h <= b_h + _EPS  # False where no window is open (NaN)
        unmet = np.where(closes, rem, 0.0)
        self.flex_rem_kwh = np.where(closes, 0.0, rem)
        self.flex_end_h = np.where(closes, np.nan, self.flex_end_h)
        flex_kw = _row_sums(flex)
        grid = pv - curt - load - flex_kw + bat
        self.peak_import_kw = _pmax(self.peak_import_kw, -grid)
        return {"pv_kw": pv, "load_kw": load, "flex_kw": flex_kw, "battery_kw": bat, "soc_kwh": self.soc_kwh,
                "grid_kw": grid, "curtailed_kw": curt, "unmet_flex_kwh": _row_sums(np.where(unmet > 1e-7, unmet, 0.0))}


_RECORD_COLUMNS = tuple(f.name for f in dataclasses.fields(StepRecord))[1:]
"""The columns of a :class:`StepRecord` after ``prosumer``, in order."""
