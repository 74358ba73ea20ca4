"""Transmission power flow for transmission-and-distribution (T&D) co-simulation (no HELICS here;
``federate.py`` is the thin shell).

Built on PYPOWER (the BSD-licensed Python port of MATPOWER): its case files (IEEE 9 to 300 bus) and its
Newton-Raphson power flow (``newtonpf``, the solver of ``runpf``). The network is indexed and its admittance
matrix built once; each step only changes the loads and the generators' dispatch and re-solves, warm-started
from the last converged voltages.

A step (:meth:`TransmissionModel.solve`):

1. **The case's own loads follow a daily shape**: every bus load ``Pd, Qd`` of the case is multiplied by
   ``load_multiplier`` (the federate passes ``federates.feeder.shapes.background_multiplier``, the same
   time-of-day shape as the feeders' background loads, which peaks at 1.0: the case's loads are taken as the
   evening peak). The dispatch of every generator other than the slack is scaled by the same multiplier
   (``Pg = Pg_case x multiplier``, proportional dispatch), so the slack bus takes only what the multiplier
   cannot foresee: the feeders' power and the change in losses.
2. **The feeders' head power is added at their buses**, on top of the case's own load: feeder ``f`` attached
   at bus ``b`` with ``copies`` identical feeders adds ``copies x p_head_kw / 1000`` MW and
   ``copies x q_head_kvar / 1000`` Mvar to ``Pd, Qd`` of ``b`` (``p_head_kw`` > 0: the substation supplies the
   feeder; < 0, reverse flow, lowers the bus load). One LV community is a few tens of kW, invisible on a
   transmission bus of hundreds of MW; ``copies`` says how many communities like it hang on that bus.
3. **Newton-Raphson** (PYPOWER ``newtonpf``, tolerance ``tolerance_mva`` / baseMVA, at most ``max_iterations``).
   Generator reactive limits are not enforced (``runpf``'s default).
4. **What a feeder sees**: ``v_source_pu = tap_pu x |V_bus|``: the feeder's substation transformer has a fixed
   tap, the one that gives the feeder's own source voltage (its master file's ``Vsource.source`` ``pu``,
   ``tap_pu``) when the transmission bus is at 1.0 pu. Without a transmission model the feeder runs at
   ``tap_pu``; with it, the transmission bus's deviation from 1.0 pu passes through.

Sign conventions: loads ``p_load_mw`` > 0 consume; generation ``p_gen_mw`` > 0 produces; losses are the
series (I^2 R) losses of every branch, ``sum(PF + PT)``. The balance ``p_gen_mw = p_load_mw + shunt_mw +
losses_mw`` holds for every converged solution (``shunt_mw``: bus shunt conductances ``Gs x V^2``).
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from pypower.bustypes import bustypes
from pypower.ext2int import ext2int
from pypower.idx_brch import PF, PT, QT
from pypower.idx_bus import BUS_I, GS, PD, QD, VA, VM
from pypower.idx_gen import GEN_BUS, GEN_STATUS, PG, QG, VG
from pypower.loadcase import loadcase
from pypower.makeSbus import makeSbus
from pypower.makeYbus import makeYbus
from pypower.newtonpf import newtonpf
from pypower.pfsoln import pfsoln
from pypower.ppoption import ppoption

from federates.common.errors import ConfigError
from federates.feeder.shapes import background_multiplier

# The PYPOWER cases a scenario may name (``transmission.case``); federates/common/config.py lists the same names.
CASES = ("case4gs", "case6ww", "case9", "case14", "case24_ieee_rts", "case30", "case39", "case57", "case118",
         "case300")


def load_case(name: str) -> dict:
    """A fresh copy of PYPOWER case ``name`` (a MATPOWER-format dict: baseMVA, bus, gen, branch, ...)."""
    if name not in CASES:
        raise ConfigError(f"transmission case {name!r} is unknown; use one of {list(CASES)}")
    module = importlib.import_module(f"pypower.{name}")
    return getattr(module, name)()


def case_buses(case: dict) -> list[int]:
    """External bus numbers of a case."""
    return [int(b) for b in case["bus"][:, BUS_I]]


@dataclass(frozen=True)
class Oltc:
    """An on-load tap changer at the substation: each step changes the ratio by ``step_pu`` (of ``tap_pu``), at
    most ``max_steps`` either way. It holds the source voltage within ``band_pu`` of the feeder's ``target_pu``:
    when a solution puts it outside, it moves to the step nearest the target (a 5-minute interval is longer than
    a tap changer's delay and travel), otherwise it stays (the band is its hysteresis)."""

    band_pu: float = 0.01
    step_pu: float = 0.00625
    max_steps: int = 16

    def step_for(self, current: int, v_unregulated_pu: float, target_pu: float) -> int:
        """The tap step for a bus giving ``v_unregulated_pu`` at step 0, from step ``current``."""
        if abs(v_unregulated_pu * (1 + current * self.step_pu) - target_pu) <= self.band_pu:
            return current
        wanted = round((target_pu / v_unregulated_pu - 1) / self.step_pu)
        return max(-self.max_steps, min(self.max_steps, wanted))


@dataclass(frozen=True)
class Attachment:
    """Feeder ``feeder`` hangs on transmission bus ``bus`` (external number) as ``copies`` identical feeders;
    ``tap_pu``: its source voltage when the bus is at 1.0 pu (its master's ``Vsource.source`` pu). With an
    ``oltc``, the substation regulates the source voltage towards ``target_pu`` (the master's own)."""

    feeder: str
    bus: int
    copies: int = 1
    tap_pu: float = 1.0
    oltc: Oltc | None = None
    target_pu: float = 1.0


@dataclass
class TransmissionState:
    """A solved step. Per bus arrays (in-service buses, case order): ``bus`` (external numbers), ``v_pu``,
    ``angle_deg``, ``p_load_mw`` / ``q_load_mvar`` (the case's shaped load plus the feeders'),
    ``feeders_p_mw`` / ``feeders_q_mvar`` (the feeders' part of it). Per feeder: ``v_bus_pu``, ``angle_deg_of``
    and ``v_source_pu`` (= tap x v_bus). Totals in MW / Mvar. When ``converged`` is False the voltages are NaN
    and ``message`` says why."""

    converged: bool
    iterations: int
    bus: np.ndarray
    v_pu: np.ndarray
    angle_deg: np.ndarray
    p_load_mw: np.ndarray
    q_load_mvar: np.ndarray
    feeders_p_mw: np.ndarray
    feeders_q_mvar: np.ndarray
    p_gen_mw: float
    q_gen_mvar: float
    losses_mw: float
    shunt_mw: float
    v_bus_pu: dict[str, float]
    angle_deg_of: dict[str, float]
    v_source_pu: dict[str, float]
    message: str
    tap_step: dict[str, int] = field(default_factory=dict)  # each feeder's OLTC step (0: fixed tap)

    @property
    def v_min_pu(self) -> float:
        return float(np.min(self.v_pu))

    @property
    def v_max_pu(self) -> float:
        return float(np.max(self.v_pu))


class TransmissionModel:
    """One transmission case with feeders attached; :meth:`solve` once per step.

    ``case``: a PYPOWER case name (:data:`CASES`) or a case dict (MATPOWER format, e.g. a hand-made two-bus
    case); it is never modified. ``attachments``: where each feeder hangs (:class:`Attachment`).
    """

    def __init__(self, case: str | dict, attachments: Sequence[Attachment] = (), *, max_iterations: int = 30,
                 tolerance_mva: float = 1e-6):
        self.name = case if isinstance(case, str) else "custom"
        raw = loadcase(load_case(case) if isinstance(case, str) else case)  # a deep copy, version-checked
        known = set(case_buses(raw))
        problems = [f"feeder {a.feeder!r}: bus {a.bus} is not a bus of {self.name} (buses {min(known)}-{max(known)})"
                    for a in attachments if a.bus not in known]
        problems += [f"feeder {a.feeder!r}: copies {a.copies} must be >= 1" for a in attachments if a.copies < 1]
        if problems:
            raise ConfigError(problems, source=f"transmission case {self.name}")
        for table in ("bus", "gen", "branch"):  # some PYPOWER cases are integer arrays: a solved PG would be cut
            raw[table] = np.asarray(raw[table], dtype=float)
        if raw["branch"].shape[1] <= QT:  # room for the solved flows, as runpf makes it
            raw["branch"] = np.c_[raw["branch"], np.zeros((raw["branch"].shape[0], QT + 1 - raw["branch"].shape[1]))]
        ppc = ext2int(raw)
        self._base_mva = float(ppc["baseMVA"])
        self._bus, self._gen, self._branch = ppc["bus"], ppc["gen"], ppc["branch"]
        self._ybus, self._yf, self._yt = makeYbus(self._base_mva, self._bus, self._branch)
        self._ref, self._pv, self._pq = bustypes(self._bus, self._gen)
        self.buses = np.asarray(ppc["order"]["bus"]["i2e"], dtype=int)  # external numbers of the in-service buses
        internal = {int(b): k for k, b in enumerate(self.buses)}
        self.attachments = list(attachments)
        missing = [a for a in self.attachments if a.bus not in internal]
        if missing:
            raise ConfigError([f"feeder {a.feeder!r}: bus {a.bus} of {self.name} is out of service" for a in missing],
                              source=f"transmission case {self.name}")
        self._at = {a.feeder: internal[a.bus] for a in self.attachments}
        self._pd0, self._qd0 = self._bus[:, PD].copy(), self._bus[:, QD].copy()
        self._pg0 = self._gen[:, PG].copy()
        self._slack_gen = np.isin(self._gen[:, GEN_BUS].astype(int), self._ref)
        self._opt = ppoption(VERBOSE=0, OUT_ALL=0, PF_MAX_IT=int(max_iterations), PF_TOL=tolerance_mva / self._base_mva)
        self._v0 = self._flat_start()
        self._v_last = self._v0.copy()
        self.tap_step = {a.feeder: 0 for a in self.attachments}  # OLTC positions, carried from solve to solve

    def _flat_start(self) -> np.ndarray:
        """The case's own voltages, generator buses at their set points (``runpf``'s start)."""
        v0 = self._bus[:, VM] * np.exp(1j * np.pi / 180 * self._bus[:, VA])
        gbus = self._gen[:, GEN_BUS].astype(int)
        controlled = np.isin(gbus, np.r_[self._ref, self._pv])
        v0[gbus[controlled]] = self._gen[controlled, VG] / np.abs(v0[gbus[controlled]]) * v0[gbus[controlled]]
        return v0

    def solve(self, feeder_pq: Mapping[str, tuple[float, float]], load_multiplier: float = 1.0) -> TransmissionState:
        """Solve with the case's loads and dispatch x ``load_multiplier`` and each attached feeder's head power
        ``feeder_pq[f] = (p_head_kw, q_head_kvar)`` x its copies at its bus (a feeder not given adds nothing)."""
        if not (math.isfinite(load_multiplier) and load_multiplier >= 0):
            raise ConfigError(f"load multiplier {load_multiplier!r} must be a finite number >= 0")
        unknown = sorted(set(feeder_pq) - set(self._at))
        if unknown:
            raise ConfigError(f"feeders {unknown} are not attached to {self.name}; attached: {sorted(self._at)}")
        fp, fq = np.zeros(len(self.buses)), np.zeros(len(self.buses))
        for a in self.attachments:
            p_kw, q_kvar = feeder_pq.get(a.feeder, (0.0, 0.0))
            fp[self._at[a.feeder]] += a.copies * p_kw / 1000.0
            fq[self._at[a.feeder]] += a.copies * q_kvar / 1000.0
        bus, gen = self._bus.copy(), self._gen.copy()
        bus[:, PD] = self._pd0 * load_multiplier + fp
        bus[:, QD] = self._qd0 * load_multiplier + fq
        gen[~self._slack_gen, PG] = self._pg0[~self._slack_gen] * load_multiplier
        v, ok, iterations = self._newton(bus, gen, self._v_last)
        if not ok:  # once more from the case's own start: a warm start far from the new operating point can fail
            v, ok, iterations = self._newton(bus, gen, self._v0)
        if not ok:
            return self._failed(bus, fp, fq, iterations)
        self._v_last = v
        bus, gen, branch = pfsoln(self._base_mva, bus, gen, self._branch.copy(), self._ybus, self._yf, self._yt, v,
                                  self._ref, self._pv, self._pq)
        vm, va = bus[:, VM], bus[:, VA]
        on = gen[:, GEN_STATUS] > 0
        v_bus = {a.feeder: float(vm[self._at[a.feeder]]) for a in self.attachments}
        return TransmissionState(
            converged=True, iterations=int(iterations), bus=self.buses.copy(), v_pu=vm.copy(), angle_deg=va.copy(),
            p_load_mw=bus[:, PD].copy(), q_load_mvar=bus[:, QD].copy(), feeders_p_mw=fp, feeders_q_mvar=fq,
            p_gen_mw=float(gen[on, PG].sum()), q_gen_mvar=float(gen[on, QG].sum()),
            losses_mw=float((branch[:, PF] + branch[:, PT]).sum()),
            shunt_mw=float((bus[:, GS] * vm ** 2).sum()),
            v_bus_pu=v_bus, angle_deg_of={a.feeder: float(va[self._at[a.feeder]]) for a in self.attachments},
            v_source_pu=self._regulate(v_bus), tap_step=dict(self.tap_step),
            message=f"converged in {iterations} Newton iterations")

    def _regulate(self, v_bus: dict[str, float]) -> dict[str, float]:
        """Each feeder's source voltage, ``tap_pu x (1 + step x step_pu) x |V_bus|``, after its OLTC (if any) has
        moved for this solution."""
        v_source = {}
        for a in self.attachments:
            fixed = a.tap_pu * v_bus[a.feeder]
            if a.oltc is not None:
                self.tap_step[a.feeder] = a.oltc.step_for(self.tap_step[a.feeder], fixed, a.target_pu)
                v_source[a.feeder] = fixed * (1 + self.tap_step[a.feeder] * a.oltc.step_pu)
            else:
                v_source[a.feeder] = fixed
        return v_source

    def _newton(self, bus: np.ndarray, gen: np.ndarray, v0: np.ndarray) -> tuple[np.ndarray, bool, int]:
        """One Newton-Raphson solve; a singular Jacobian or non-finite voltages count as not converged."""
        sbus = makeSbus(self._base_mva, bus, gen)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # scipy's singular-matrix warning: judged by the result below
            try:
                v, ok, iterations = newtonpf(self._ybus, sbus, v0.copy(), self._ref, self._pv, self._pq, self._opt)
            except (RuntimeError, np.linalg.LinAlgError):  # SuperLU: "failed to factorize matrix" (singular)
                return v0, False, 0
        ok = bool(ok) and bool(np.all(np.isfinite(v))) and float(np.abs(v).max(initial=0.0)) < 3.0
        return v, ok, int(iterations)

    def _failed(self, bus: np.ndarray, fp: np.ndarray, fq: np.ndarray, iterations: int) -> TransmissionState:
        nan = np.full(len(self.buses), np.nan)
        load = float(bus[:, PD].sum())
        return TransmissionState(
            converged=False, iterations=iterations, bus=self.buses.copy(), v_pu=nan, angle_deg=nan.copy(),
            p_load_mw=bus[:, PD].copy(), q_load_mvar=bus[:, QD].copy(), feeders_p_mw=fp, feeders_q_mvar=fq,
            p_gen_mw=math.nan, q_gen_mvar=math.nan, losses_mw=math.nan, shunt_mw=math.nan,
            v_bus_pu={a.feeder: math.nan for a in self.attachments},
            angle_deg_of={a.feeder: math.nan for a in self.attachments},
            v_source_pu={a.feeder: math.nan for a in self.attachments},
            message=(f"{self.name}: Newton-Raphson did not converge in {iterations} iterations (twice: warm and "
                     f"case start) with {load:.1f} MW of load, of which {fp.sum():.1f} MW from the feeders"))


def attachments(links: Sequence[Mapping], oltc: Oltc | None = None) -> list[Attachment]:
    """Attachments from the builder's link rows (``feeder``, ``bus``, ``copies``, ``tap_pu`` and the master's
    ``source_pu``, the OLTC's target), each with ``oltc`` (None: fixed taps)."""
    return [Attachment(r["feeder"], r["bus"], r["copies"], r["tap_pu"], oltc, r.get("source_pu", r["tap_pu"]))
            for r in links]


def case_multiplier(load_shape: str, start: datetime, time_s: float) -> float:
    """The case's load multiplier at ``time_s`` after ``start``: the feeders' background shape (``"background"``,
    peak 1.0) or 1.0 (``"flat"``)."""
    return background_multiplier(start, time_s) if load_shape == "background" else 1.0


def first_interval(model: TransmissionModel, base_pq: Mapping[str, tuple[float, float]],
                   multiplier: float) -> TransmissionState:
    """The solution for interval 0, made before the run: the case at ``multiplier`` and each feeder's base-case
    head power ``base_pq`` scaled by the same multiplier (nothing has been measured yet)."""
    return model.solve({f: (p * multiplier, q * multiplier) for f, (p, q) in base_pq.items()}, multiplier)
