"""OpenDSS feeder physics for the co-simulation (no HELICS here; ``federate.py`` is the thin shell).

``FeederModel`` wraps one private OpenDSS engine (an ``opendssdirect`` context) holding one feeder.
A time step is: ``set_base_multiplier`` (time-of-day shape of the ordinary loads) ->
``set_injections`` (prosumers' net powers) -> ``solve()`` -> a plain :class:`FeederState`.

SIGN CONVENTION (project-wide): every net power is positive when it is INJECTED INTO THE DISTRIBUTION
NETWORK by the named element. ``set_injections({"house_h001": 4.2})`` means house h001 exports 4.2 kW;
-1.5 means it imports 1.5 kW. ``FeederState.p_head_kw`` > 0 means the substation supplies the feeder
(< 0 is reverse flow into the upstream grid).

How prosumers are modelled (and the limits of it)
-------------------------------------------------
A prosumer is an existing OpenDSS ``Load`` whose active power is set to the *net* value:
``kW = -p_kw`` (a negative load exports). Placement turns the load into constant power (``model=1``)
and widens its voltage band to [``PROSUMER_VMIN_PU``, ``PROSUMER_VMAX_PU``] so that the injection is
exactly the commanded one over all realistic voltages (outside that band OpenDSS turns any load into a
constant impedance, so the injection then scales with V^2; the reported state is still physical because
all powers are read back from the solution). The house's reactive demand stays at its base kvar times
the current base multiplier (the PV inverter runs at unity power factor). Not modelled: inverter current
limits, volt-var / volt-watt control, and which phase the PV sits on other than the load's own phases.
Reverse flow therefore raises the local voltage as it physically should (tested).

Robustness
----------
- The master is loaded with ``redirect`` of its ABSOLUTE path in a fresh engine that may not change the
  process directory (``AllowChangeDir(False)``); OpenDSS ``DataPath`` (where it writes reports and
  regulator traces) points to a private temporary directory, so nothing is written into the feeder
  folder; the process cwd is restored afterwards. A run script (a file with a ``compile`` line, such as
  IEEE 123's ``Run_IEEE123Bus.DSS``) is refused with a ``ConfigError`` before it runs: ``compile`` moves
  DataPath back to the feeder folder and the script's ``show`` lines would write reports there.
- A failed solve (exception such as #485 "max control iterations exceeded", not converged, any
  non-finite or absurd (> 3 pu) voltage, or a prosumer not injecting what was commanded although its load
  model says it should, i.e. a non-physical solution branch or a voltage collapse) is retried once: re-arm
  the engine (``set mode=snapshot``; OpenDSS may otherwise refuse later solves, #99), rebuild the load
  admittances (``set loadmult`` to its own value; loads edited through the API keep the admittance of their
  previous kW), ``init`` (zero-load start), iteration limits x4 and control-iteration limits x2. If it
  still fails, ``solve`` returns ``converged=False`` with the reason in ``message`` (``ConvergenceError``
  only when ``strict``); the next solve starts from a flat start again.
- "Not injecting what was commanded" is judged against OpenDSS's own load model: each phase of a load sits
  across its two conductors (delta: node i to node i+1, wrapping; wye: node i to the neutral), compared
  with ``kV`` (delta, single-phase wye) or ``kV / sqrt 3`` (two-, three-phase wye), and is constant power
  only inside [Vminpu, Vmaxpu]; outside it OpenDSS models it as an impedance (a correct solution, reported
  in ``message``). A prosumer inside its band that injects something else is non-physical, one below its
  Vlowpu a voltage collapse (both fail the attempt). Placement scales a prosumer's band when the master
  connects it at another voltage than its rating (a delta load given one node, ``bus1=b.1``, sits
  line-to-ground at 1/sqrt 3 of it), see ``Placement.notes``. ``last_converged`` keeps the last good state.
- Element powers are read in one call per class through AltDSS batches when the optional ``altdss``
  package is installed (element by element otherwise; same numbers, slower on large feeders).
- Speed on large feeders (IEEE 8500, ~1,200 prosumers) without changing a digit: injections and the loads to
  rewrite are arrays; loads are written through the classic Loads API with its functions bound once (not a
  property batch, which rebuilds load admittances and so solves differently, see ``_LoadWriter``); voltage ranges
  are taken per phase column; ``FeederState.bus_v_pu`` is worked out only when read. What remains per step is
  the engine's own work (solve, losses, loadings: ``benchmarks/feeder_step.py`` ``time_bare``).
- After every successful solve the power balance is checked: feeder-head power == power consumed by all
  PC elements (loads, generators, PV, storage) + series losses, within 0.1 % of the gross power flow.
  A mismatch raises ``PhysicsInvariantError`` when ``strict``, else logs a warning.
"""

from __future__ import annotations

import cmath
import heapq
import logging
import math
import os
import random
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import opendssdirect

from federates.common.errors import ConfigError, ConvergenceError, PhysicsInvariantError

log = logging.getLogger(__name__)

RESIDENTIAL_MAX_KW = 50.0  # a single-phase load up to this size may stand for one or several houses
SMALL_THREE_PHASE_MAX_KW = 30.0  # a multi-phase load up to this size is a large house / small business
HOUSE_KW = 5.0  # houses represented by a placed load: ceil(kW / HOUSE_KW)
PROSUMER_VMIN_PU = 0.7
PROSUMER_VMAX_PU = 1.3
PROSUMER_VLOW_PU = 0.5  # OpenDSS's default Vlowpu: below it a load is a plain constant impedance
RATING_TOL = 0.05  # a load seeing more than 5 % off its own kV rating at nominal bus voltage gets a note
BALANCE_REL_TOL = 1e-3  # 0.1 % of the gross power flow
ABSURD_V_PU = 3.0  # a solved voltage above this is treated as a failed (diverged) solution
# km per OpenDSS length unit (LineUnits: 1 mi, 2 kft, 3 km, 4 m, 5 ft, 6 in, 7 cm, 8 mm; 0 = none)
KM_PER_UNIT = {1: 1.609344, 2: 0.3048, 3: 1.0, 4: 1e-3, 5: 3.048e-4, 6: 2.54e-5, 7: 1e-5, 8: 1e-6}
UNITLESS_WARN_LENGTH = 0.01  # a line without length units longer than this (taken as km) gets a warning
_PC_CLASSES = ("Generators", "PVsystems", "Storages")  # loads are read separately


@dataclass(frozen=True)
class LoadInfo:
    """One OpenDSS load as defined in the master file (base values; kW and kvar are consumption)."""

    name: str
    bus: str
    phases: int
    kw: float
    kvar: float
    kv: float


@dataclass(frozen=True)
class Placement:
    """Result of :meth:`FeederModel.place_prosumers`.

    ``loads``: the prosumer load names, in feeder order. ``skipped``: load name -> why it was not placed.
    ``houses``: prosumer load name -> number of houses it stands for (ceil(kW / 5 kW), at least 1).
    ``notes``: prosumer load name -> what placement adjusted and why (e.g. a load connected at a voltage
    other than its own kV rating); ``shortfall``: "" or why fewer prosumers were placed than asked for.
    """

    loads: list[str]
    skipped: dict[str, str]
    houses: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    shortfall: str = ""


@dataclass(frozen=True)
class Violation:
    """A limit violation. ``kind``: "overvoltage" | "undervoltage" (element = load name, value and limit
    in pu) or "overload" (element = "line.<name>" / "transformer.<name>", value and limit in % of normal
    amps)."""

    kind: str
    element: str
    value: float
    limit: float


@dataclass
class FeederState:
    """The solved feeder. Powers in kW/kvar; ``p_head_kw`` > 0 when the substation supplies the feeder.

    ``v_pu``: per load, the service voltage of its worst phase (furthest from 1.0 pu).
    ``v_min_pu`` / ``v_max_pu``: lowest / highest phase voltage over all load service points.
    ``bus_v_pu``: per bus, the worst phase voltage (nodes 1-3), a read-only mapping worked out from the solve's
    node voltages when first read. When ``converged`` is False the numbers
    are NaN, the dicts empty and ``message`` says why (nothing was solved; ``FeederModel.last_converged``
    keeps the last state that was).
    """

    converged: bool
    v_pu: dict[str, float]
    v_min_pu: float
    v_max_pu: float
    p_head_kw: float
    q_head_kvar: float
    losses_kw: float
    max_loading_pct: float
    violations: list[Violation]
    bus_v_pu: Mapping[str, float]
    message: str


@dataclass(frozen=True)
class _LoadTerminal:
    """How OpenDSS connects a load, i.e. what its voltage model (constant power only inside
    [Vminpu, Vmaxpu], an impedance outside) compares with what.

    As in OpenDSS's Load model, each of the load's phases sits across two conductors: conductor i and the
    neutral (the last conductor) for wye, conductor i and conductor i+1 (wrapping) for delta. A single-phase
    delta load has two conductors, so ``bus1=b.1`` (one node given, as in some distributed IEEE 34 files)
    puts its second conductor on node 0: it is connected line-to-ground. The voltage that counts as 1 pu is
    ``kV`` for delta and single-phase wye loads and ``kV / sqrt 3`` for two- and three-phase wye loads.
    """

    delta: bool
    nodes: tuple[int, ...]  # bus node of each conductor, 0 = ground
    phases: int
    kv: float

    @property
    def v_base(self) -> float:
        """Volts across one phase of the load at 1 pu of its own rating."""
        if self.delta or self.phases == 1:
            return self.kv * 1000.0
        return self.kv * 1000.0 / math.sqrt(3.0)

    def phase_pu(self, v: np.ndarray) -> np.ndarray:
        """|voltage across each phase| in pu of the load's own rating, from its complex conductor voltages (V)."""
        n = len(self.nodes)
        pairs = [(i, (i + 1) % n) if self.delta else (i, n - 1) for i in range(self.phases)]
        return np.array([abs(v[i] - v[j]) for i, j in pairs]) / max(self.v_base, 1e-9)

    def nominal_pu(self, kv_ln_base: float) -> float:
        """What the load sees, in pu of its own rating, when its bus is at exactly 1 pu and balanced (nodes 1-3
        at 0, -120, +120 degrees; any other node, e.g. a neutral, at 0 V)."""
        v = np.array([kv_ln_base * 1000.0 * cmath.exp(-2j * math.pi * (n - 1) / 3) if 1 <= n <= 3 else 0.0
                      for n in self.nodes])
        return float(self.phase_pu(v).mean())


def _furthest_from_one(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row, whichever of the lowest / highest phase voltage is further from 1.0 pu."""
    return np.where(hi - 1.0 > 1.0 - lo, hi, lo)


def _row_range(v: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of node indices ``idx``, the lowest and the highest of ``v`` at them: ``v[idx].min(axis=1)`` and
    ``.max(axis=1)``, taken column by column (one vectorised pass per phase instead of a reduction per row)."""
    cols = v[idx.T]
    return cols.min(axis=0), cols.max(axis=0)


class _WorstPhaseByBus(Mapping):
    """``FeederState.bus_v_pu``: per bus, the phase voltage furthest from 1.0 pu, worked out from the solve's node
    voltages when first read (the federate never reads it; thousands of buses per step are not free)."""

    def __init__(self, names: list[str], v: np.ndarray, idx: np.ndarray):
        self._names, self._v, self._idx = names, v, idx
        self._dict: dict[str, float] | None = None

    def _worked_out(self) -> dict[str, float]:
        if self._dict is None:
            lo, hi = _row_range(self._v, self._idx)
            self._dict = dict(zip(self._names, _furthest_from_one(lo, hi).tolist(), strict=True))
            self._v = self._idx = None
        return self._dict

    def __getitem__(self, bus: str) -> float:
        return self._worked_out()[bus]

    def __iter__(self):
        return iter(self._worked_out())

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return repr(self._worked_out())


def _beyond(kind: str, names: list[str], values: np.ndarray, beyond: np.ndarray, limit: float) -> list[Violation]:
    """A ``kind`` violation for each element where ``beyond``, in element order."""
    ks = beyond.nonzero()[0]
    if not len(ks):
        return []
    return [Violation(kind, names[k], x, limit) for k, x in zip(ks.tolist(), values[ks].tolist(), strict=True)]


def _padded(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Rows of node indices padded with their own first entry (so min/max/worst are unaffected)."""
    width = max((len(r) for r in rows), default=1)
    return np.array([list(r) + [r[0]] * (width - len(r)) for r in rows], dtype=np.intp).reshape(-1, width)


class FeederModel:
    """One OpenDSS feeder in a private engine, stepped by the feeder federate.

    Parameters: ``master_path`` the OpenDSS master file (any folder; it is never written to);
    ``max_iterations`` / ``max_control_iterations`` the OpenDSS solution limits; ``v_min_pu`` /
    ``v_max_pu`` the service voltage range (ANSI C84.1 Range A by default); ``strict`` raise
    ``ConvergenceError`` / ``PhysicsInvariantError`` instead of reporting them.
    """

    def __init__(
        self,
        master_path: str | os.PathLike[str],
        *,
        max_iterations: int = 100,
        max_control_iterations: int = 100,
        v_min_pu: float = 0.95,
        v_max_pu: float = 1.05,
        strict: bool = False,
        injectors: Sequence[str] = (),
    ):
        self.master_path = Path(master_path).resolve()
        if not self.master_path.is_file():
            raise ConfigError(
                f"feeder master file {self.master_path} does not exist; give the path of a .dss file"
            )
        if not 0 < v_min_pu < v_max_pu:
            raise ConfigError(f"voltage range [{v_min_pu}, {v_max_pu}] pu is empty; use e.g. [0.95, 1.05]")
        if max_iterations < 1 or max_control_iterations < 1:
            raise ConfigError(
                f"max_iterations={max_iterations}, max_control_iterations={max_control_iterations}: "
                "both must be >= 1"
            )
        self.max_iterations = int(max_iterations)
        self.max_control_iterations = int(max_control_iterations)
        self.v_min_pu = float(v_min_pu)
        self.v_max_pu = float(v_max_pu)
        self.strict = strict
        _refuse_run_script(self.master_path)
        self._tmp = tempfile.mkdtemp(prefix="harmony-opendss-")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._tmp, True)
        cwd = os.getcwd()  # a new OpenDSS context changes the process directory to where the library was loaded
        try:
            self._dss = opendssdirect.dss.NewContext()
        finally:
            os.chdir(cwd)
        self._compile()
        self._source = self._find_source()
        self.injectors = self._add_injectors(injectors)
        self._index_loads()
        self._index_network()
        self._multiplier = 1.0
        self._prosumers: dict[str, int] = {}  # name -> 0-based load index (injectors included once placed)
        self._kvar_dirty = False
        self._needs_flat_start = False
        self.last_converged: FeederState | None = None  # the state of the last solve that converged

    # ------------------------------------------------------------------ setup
    def _compile(self) -> None:
        d = self._dss
        d.Basic.AllowChangeDir(False)
        d.Basic.AllowEditor(False)
        d.Basic.AllowForms(False)
        cwd = os.getcwd()
        try:
            d.Text.Command(f'set datapath="{self._tmp}"')
            # `redirect` keeps DataPath (compile would reset it to the feeder folder) and still resolves
            # the master's relative includes against the master's own folder.
            d.Text.Command(f'redirect "{self.master_path}"')
            d.Text.Command(f'set datapath="{self._tmp}"')
            d.Text.Command("set mode=snapshot")
            self._apply_limits(self.max_iterations, self.max_control_iterations)
        except opendssdirect.dss.DSSException as exc:
            raise ConfigError(
                f"OpenDSS could not load {self.master_path}: {exc}. "
                "Check that the master file compiles in OpenDSS."
            ) from exc
        finally:
            os.chdir(cwd)
        if d.Circuit.NumBuses() == 0:
            raise ConfigError(f"{self.master_path} defines no circuit; it needs a `New Circuit.<name>` line")

    def _find_source(self) -> str:
        """The circuit's source: the ``Vsource.source`` that ``New Circuit`` creates at the head (every master we
        know edits that one, e.g. IEEE 8500's ``~ pu=1.05``), else the first Vsource of the circuit."""
        d = self._dss
        names = [n.lower() for n in d.Vsources.AllNames()] if d.Vsources.Count() else []
        if not names:
            raise ConfigError(f"{self.master_path} has no Vsource: a circuit needs a source (`New Circuit.<name>` "
                              "makes Vsource.source)")
        return "source" if "source" in names else names[0]

    @property
    def source_pu(self) -> float:
        """Voltage of the circuit's source (``Vsource.<name>.pu``): the master's value until :meth:`set_source_pu`."""
        self._dss.Vsources.Name(self._source)
        return float(self._dss.Vsources.PU())

    def set_source_pu(self, v_pu: float) -> None:
        """Set the source voltage for the next solves (pu of its base kV), e.g. the substation voltage that a
        transmission power flow gives (``federates.transmission``)."""
        if not (math.isfinite(v_pu) and 0.5 <= v_pu <= 1.5):
            raise ConfigError(f"source voltage {v_pu!r} pu of {self.master_path.name} must be a finite number in "
                              "[0.5, 1.5]")
        self._dss.Vsources.Name(self._source)
        self._dss.Vsources.PU(float(v_pu))

    def _add_injectors(self, buses: Sequence[str]) -> list[str]:
        """Add one constant-power element per bus through which power enters or leaves the feeder other than
        at the head (a tie line to another feeder). Each is a Load named ``harmony_injector_<k>`` driven by
        :meth:`set_injections` like a prosumer (+ = power injected into this feeder); never placed as a house."""
        d, names = self._dss, []
        for k, bus in enumerate(buses):
            if d.Circuit.SetActiveBus(bus) < 0:
                raise ConfigError(f"injector bus {bus!r} is not a bus of {self.master_path.name}; "
                                  f"buses include {[b for b in d.Circuit.AllBusNames()[:8]]}")
            nodes = [n for n in d.Bus.Nodes() if n > 0][:3]
            phases = len(nodes)
            kv = d.Bus.kVBase() * (math.sqrt(3) if phases > 1 else 1.0)
            name = f"harmony_injector_{k}"
            d.Text.Command(f"New Load.{name} bus1={bus}.{'.'.join(map(str, nodes))} phases={phases} kv={kv:.6g} "
                           f"kW=0 kvar=0 model=1 vminpu={PROSUMER_VMIN_PU} vmaxpu={PROSUMER_VMAX_PU}")
            names.append(name)
        if names:  # new elements need the buses rebuilt (with the voltage bases the master set)
            d.Text.Command("CalcVoltageBases")
        return names

    def _apply_limits(self, max_iterations: int, max_control_iterations: int) -> None:
        self._dss.Text.Command(f"set maxiterations={max_iterations} maxcontroliter={max_control_iterations}")

    def _index_loads(self) -> None:
        d = self._dss
        infos, nodes, models, vmins, vmaxs, conds = [], [], [], [], [], []
        i = d.Loads.First()
        while i > 0:
            conds.append(_LoadTerminal(delta=bool(d.Loads.IsDelta()), nodes=tuple(d.CktElement.NodeOrder()),
                                       phases=int(d.Loads.Phases()), kv=float(d.Loads.kV())))
            bus = d.CktElement.BusNames()[0].split(".")[0].lower()
            infos.append(
                LoadInfo(
                    name=d.Loads.Name().lower(),
                    bus=bus,
                    phases=int(d.Loads.Phases()),
                    kw=float(d.Loads.kW()),
                    kvar=float(d.Loads.kvar()),
                    kv=float(d.Loads.kV()),
                )
            )
            nodes.append([n for n in d.CktElement.NodeOrder() if n > 0])
            models.append(int(d.Loads.Model()))
            vmins.append(float(d.Loads.Vminpu()))
            vmaxs.append(float(d.Loads.Vmaxpu()))
            i = d.Loads.Next()
        self._loads = infos
        self._load_pos = {info.name: k for k, info in enumerate(infos)}
        self._load_nodes = nodes
        self._orig_model = models
        self._orig_vband = list(zip(vmins, vmaxs, strict=True))
        self._terminals = conds
        self._orig_vlow: dict[int, str] = {}  # Vlowpu as the master set it, for loads placement changed
        self._band: dict[int, tuple[float, float, float]] = {}  # prosumer: (Vlowpu, Vminpu, Vmaxpu) it was given
        self._load_names = [info.name for info in infos]
        # per load, in load order: base kW / kvar, prosumer or not, the prosumer's commanded injection (NaN: none
        # since placement, i.e. its base load), and whether the engine needs it rewritten (see _push_loads)
        self._kw_base = np.array([info.kw for info in infos], dtype=float)
        self._kvar_base = np.array([info.kvar for info in infos], dtype=float)
        self._is_prosumer = np.zeros(len(infos), dtype=bool)
        self._p_inj = np.full(len(infos), np.nan)
        self._dirty = np.zeros(len(infos), dtype=bool)
        self._inj_slots: tuple[tuple, np.ndarray | None] = ((), None)  # set_injections' names -> load indices
        self._writer = _LoadWriter(d)

    def _index_network(self) -> None:
        d = self._dss
        node_names = [n.lower() for n in d.Circuit.AllNodeNames()]
        node_pos = {n: k for k, n in enumerate(node_names)}
        rows = []
        for info, nodes in zip(self._loads, self._load_nodes, strict=True):
            rows.append([node_pos[f"{info.bus}.{n}"] for n in nodes if f"{info.bus}.{n}" in node_pos] or [0])
        self._load_idx = _padded(rows) if rows else np.zeros((0, 1), dtype=np.intp)
        bus_rows: dict[str, list[int]] = {}
        for k, name in enumerate(node_names):
            bus, _, node = name.rpartition(".")
            if node in ("1", "2", "3"):
                bus_rows.setdefault(bus, []).append(k)
        self._bus_names = list(bus_rows)
        self._bus_idx = _padded(list(bus_rows.values()))
        pd_names = [n.lower() for n in d.PDElements.AllNames()]
        self._pd_mask = np.array([n.startswith(("line.", "transformer.")) for n in pd_names], dtype=bool)
        self._line_names = [n for n, line in zip(pd_names, self._pd_mask.tolist(), strict=True) if line]
        self._other_pc = [getattr(d, c) for c in _PC_CLASSES if getattr(d, c).Count() > 0]
        self._load_p = np.zeros(len(self._loads))
        self._inj_now = np.full(len(self._loads), np.nan)
        self._pros_idx = np.zeros(0, dtype=np.intp)
        self._pc_total_kw = float("nan")
        self._v = np.zeros(0)
        self._load_batch, self._other_batches = _altdss_batches(d)
        self._n_nodes = len(node_names)

    # ------------------------------------------------------------------ public API
    def loads(self) -> list[LoadInfo]:
        """All loads of the feeder with their base (as-defined) values."""
        return list(self._loads)

    @property
    def prosumers(self) -> list[str]:
        """The load names currently acting as prosumers."""
        return list(self._prosumers)

    def place_prosumers(self, mode: str | int | float | Sequence[str], *, seed: int) -> Placement:
        """Choose which loads become prosumers (replacing any earlier placement).

        ``mode``: ``"all"`` every eligible load; an ``int`` n: n eligible loads drawn with ``seed`` (all of
        them when there are fewer, with ``Placement.shortfall`` saying so);
        a ``float`` f in (0, 1]: round(f x eligible) loads drawn with ``seed`` (at least one); a list of load
        names: those loads (ineligible ones are reported in ``skipped``).

        Eligible (residential-size) loads: kW > 0 (kvar-only loads are reactive equivalents, not houses),
        not disabled, single-phase with kW <= 50 or multi-phase with kW <= 30; larger loads are MV or
        commercial equivalents. A placed load above 5 kW stands for ceil(kW / 5) houses (``houses``).
        """
        eligible, skipped = self._eligible()
        chosen, shortfall = self._choose(mode, eligible, skipped, seed)
        self._reset_prosumers()
        notes = {}
        for name in [*chosen, *self.injectors]:
            note = self._make_prosumer(name)
            if note and name in chosen:
                notes[name] = note
        self._pros_idx = np.array(sorted(self._prosumers.values()), dtype=np.intp)
        self._kvar_dirty = True
        houses = {n: max(1, math.ceil(self._loads[self._load_pos[n]].kw / HOUSE_KW - 1e-9)) for n in chosen}
        return Placement(loads=list(chosen), skipped=skipped, houses=houses, notes=notes, shortfall=shortfall)

    def _make_prosumer(self, name: str) -> str:
        """Turn load ``name`` into a constant-power prosumer whose band covers what it really sees.

        The band [PROSUMER_VMIN_PU, PROSUMER_VMAX_PU] (and Vlowpu) is in pu of the load's own kV rating. When
        the master connects the load at another voltage (a delta load given one node sits line-to-ground and
        sees 1/sqrt 3 of its rating), the band is scaled by that ratio so that OpenDSS keeps it at constant
        power over the same realistic range of bus voltages; returns a note saying so ("" otherwise)."""
        d, k = self._dss, self._load_pos[name]
        ratio = self._rated_ratio(k)
        scale = ratio if abs(ratio - 1.0) > RATING_TOL else 1.0
        d.Loads.Idx(k + 1)
        d.Loads.Model(1)
        d.Loads.Vminpu(PROSUMER_VMIN_PU * scale)
        d.Loads.Vmaxpu(PROSUMER_VMAX_PU * scale)
        self._band[k] = (PROSUMER_VLOW_PU * scale, PROSUMER_VMIN_PU * scale, PROSUMER_VMAX_PU * scale)
        self._prosumers[name] = k
        self._is_prosumer[k] = True
        self._dirty[k] = True
        if scale == 1.0:
            return ""
        d.Text.Command(f"? load.{name}.vlowpu")
        self._orig_vlow[k] = d.Text.Result()
        d.Text.Command(f"load.{name}.vlowpu={PROSUMER_VLOW_PU * scale:.6g}")
        t = self._terminals[k]
        return (f"{'delta' if t.delta else 'wye'} load rated {t.kv:g} kV on nodes {'.'.join(map(str, t.nodes))} "
                f"sees {ratio:.3f} of its rating at nominal bus voltage; constant-power band scaled to "
                f"{PROSUMER_VMIN_PU * scale:.3f}-{PROSUMER_VMAX_PU * scale:.3f} pu of its rating")

    def _rated_ratio(self, k: int) -> float:
        """Voltage load ``k`` sees at nominal bus voltage, in pu of its own rating (1.0 if unknown)."""
        d = self._dss
        if d.Circuit.SetActiveBus(self._loads[k].bus) < 0 or d.Bus.kVBase() <= 0.0:
            return 1.0
        return self._terminals[k].nominal_pu(d.Bus.kVBase()) or 1.0

    def set_base_multiplier(self, m: float) -> None:
        """Scale every non-prosumer load's base kW and kvar by ``m`` (time-of-day shape, >= 0).

        kvar-only loads (kW = 0) keep kW = 0; only their kvar is scaled. Prosumers' reactive demand follows
        ``m`` too; their active power is what :meth:`set_injections` gives.
        """
        if not (math.isfinite(m) and m >= 0):
            raise ConfigError(
                f"base multiplier {m!r} must be a finite number >= 0 (1.0 = the feeder's base loads)"
            )
        if m != self._multiplier:
            self._multiplier = float(m)
            self._dirty[:] = True
            self._kvar_dirty = True

    def set_injections(self, p_kw: Mapping[str, float]) -> None:
        """Set prosumers' NET active power, positive = export into the network, negative = import (kW).

        Only the given prosumers change; the others keep their last value (initially their base load,
        i.e. -base kW x multiplier).

        The federate passes the same names every step: their load indices are looked up once and the values
        then checked and stored as one array (the general per-name path handles anything else, and words the
        errors).
        """
        names = tuple(p_kw)
        if names != self._inj_slots[0]:
            self._inj_slots = (names, self._slots_of(names))
        idx = self._inj_slots[1]
        values = _finite_floats(p_kw.values()) if idx is not None else None
        if values is None:
            self._set_injections_one_by_one(p_kw)
            return
        changed = ~(self._p_inj[idx] == values)  # a prosumer without an injection yet (NaN) always changes
        self._p_inj[idx[changed]] = values[changed]
        self._dirty[idx[changed]] = True

    def _slots_of(self, names: tuple) -> np.ndarray | None:
        """Load indices of prosumer ``names`` (None when one is not a prosumer or two name the same load: the
        one-by-one path then words the error or applies them in order)."""
        idx = [self._prosumers.get(name.lower()) if isinstance(name, str) else None for name in names]
        if None in idx or len(set(idx)) < len(idx):
            return None
        return np.array(idx, dtype=np.intp)

    def _set_injections_one_by_one(self, p_kw: Mapping[str, float]) -> None:
        problems = []
        for name, p in p_kw.items():
            key = name.lower()
            if key not in self._prosumers:
                problems.append(
                    f"{name!r} is not a prosumer load; place it first (prosumers: {self.prosumers})"
                )
            elif not math.isfinite(p):
                problems.append(f"injection of {name!r} is {p!r}; it must be a finite number of kW")
        if problems:
            raise ConfigError(problems, source="set_injections")
        for name, p in p_kw.items():
            k = self._prosumers[name.lower()]
            if self._p_inj[k] != p:
                self._p_inj[k] = float(p)
                self._dirty[k] = True

    def fix_taps(self, taps: Mapping[str, float]) -> None:
        """Fix regulator/transformer taps (per unit, on the controlled winding, default 2) and disable the
        RegControls acting on those transformers, e.g. to reproduce a published case."""
        d = self._dss
        known = {n.lower() for n in d.Transformers.AllNames()}
        problems = [
            f"transformer {n!r} not found in {self.master_path.name}" for n in taps if n.lower() not in known
        ]
        problems += [
            f"tap {t!r} of transformer {n!r} must be a per-unit ratio in (0.5, 1.5)"
            for n, t in taps.items()
            if not (math.isfinite(t) and 0.5 < t < 1.5)
        ]
        if problems:
            raise ConfigError(problems, source="fix_taps")
        wanted = {n.lower() for n in taps}
        winding = {}
        i = d.RegControls.First()
        while i > 0:
            tr = d.RegControls.Transformer().lower()
            if tr in wanted:
                winding[tr] = d.RegControls.Winding()
                d.Text.Command(f"RegControl.{d.RegControls.Name()}.enabled=no")
            i = d.RegControls.Next()
        for name, tap in taps.items():
            d.Text.Command(f"Transformer.{name}.wdg={winding.get(name.lower(), 2)} tap={tap}")

    def solve(self) -> FeederState:
        """Push the pending load changes, solve the power flow (with one documented retry) and extract."""
        self._push_loads()
        ok, message = self._attempt(flat_start=self._needs_flat_start)
        if not ok:
            log.warning(
                "%s: power flow failed (%s); retrying from a flat start", self.master_path.name, message
            )
            ok, retry_msg = self._retry()
            message = f"{message}; retry: {retry_msg}"
        if not ok:
            self._needs_flat_start = True
            text = f"{self.master_path.name}: power flow did not converge after one retry ({message})"
            if self.strict:
                raise ConvergenceError(text + "; reduce the injections or raise max_iterations")
            return self._failed_state(text)
        self._needs_flat_start = False
        state = self._extract(message)
        self._check_balance(state)
        self.last_converged = state
        return state

    def node_voltages_pu(self) -> dict[str, float]:
        """Per node ("bus.node", lower case) voltage magnitude in pu of the last solve (for validation)."""
        d = self._dss
        return dict(zip((n.lower() for n in d.Circuit.AllNodeNames()), d.Circuit.AllBusMagPu(), strict=True))

    def load_distances_km(self) -> dict[str, float]:
        """Per load (lower-case name, injectors included): the distance of its bus from the circuit's source bus
        along the lines, in km (NaN when no closed path connects them).

        The network is walked as a graph of buses joined by every enabled power-delivery element with no open
        terminal: a line weighs its length converted to km from its own length units, or, when it has none, from
        the units of its line code (OpenDSS then reads the length in the line code's units, as its impedances are);
        switches and every other element (transformers, regulators, series reactors) weigh 0. The source bus is
        that of the circuit's own voltage source (the first Vsource); on a meshed network the distance is the
        shortest path. A line without units anywhere is taken in km, as OpenDSS's own ``Bus.Distance`` does, and
        named in a warning. Unlike ``Bus.Distance`` this needs no EnergyMeter, is not cut at the feeder's own
        meters' zone boundaries and honours a line code's units.
        """
        d = self._dss
        line_km, unitless = self._line_lengths_km()
        if unitless:  # OpenDSS's connectors (length 0.001, no units) are harmless; a real line is not
            level = logging.WARNING if max(unitless.values()) > UNITLESS_WARN_LENGTH else logging.DEBUG
            log.log(level, "%s: %d line(s) have no length units (%s); their lengths are taken as km; give units= "
                    "on the line or its line code", self.master_path.name, len(unitless),
                    ", ".join(list(unitless)[:3]) + ("..." if len(unitless) > 3 else ""))
        graph: dict[str, list[tuple[str, float]]] = {}
        i = d.PDElements.First()
        while i > 0:
            name = d.CktElement.Name().lower()
            if not self._has_open_terminal():  # PDElements iterates enabled elements only
                buses = list(dict.fromkeys(b.split(".")[0].lower() for b in d.CktElement.BusNames()))
                km = line_km.get(name, 0.0)
                for a in buses:
                    graph.setdefault(a, []).extend((b, km) for b in buses if b != a)
            i = d.PDElements.Next()
        d.Vsources.First()
        source = d.CktElement.BusNames()[0].split(".")[0].lower()
        dist = _shortest_paths(graph, source)
        return {info.name: dist.get(info.bus, float("nan")) for info in self._loads}

    def _line_lengths_km(self) -> tuple[dict[str, float], dict[str, float]]:
        """Every line's length in km ("line.<name>" -> km; switches 0) and the lines without any length units (name
        -> length as given)."""
        d = self._dss
        code_units: dict[str, int] = {}
        i = d.LineCodes.First()
        while i > 0:
            code_units[d.LineCodes.Name().lower()] = int(d.LineCodes.Units())
            i = d.LineCodes.Next()
        lengths, unitless = {}, {}
        i = d.Lines.First()
        while i > 0:
            name = d.Lines.Name().lower()
            units = int(d.Lines.Units()) or code_units.get(d.Lines.LineCode().lower(), 0)
            if d.Lines.IsSwitch():
                km = 0.0
            else:
                if units not in KM_PER_UNIT:
                    unitless[name] = float(d.Lines.Length())
                km = float(d.Lines.Length()) * KM_PER_UNIT.get(units, 1.0)
            lengths[f"line.{name}"] = km
            i = d.Lines.Next()
        return lengths, unitless

    def _has_open_terminal(self) -> bool:
        """The active element has a terminal whose every conductor is open (it connects nothing there)."""
        d = self._dss
        phases = max(1, int(d.CktElement.NumPhases()))
        return any(all(d.CktElement.IsOpen(t, p) for p in range(1, phases + 1))
                   for t in range(1, int(d.CktElement.NumTerminals()) + 1))

    def close(self) -> None:
        """Clear the engine and delete the temporary OpenDSS data folder. OpenDSS's ``clear`` changes the process
        directory back to where the engine library was first loaded: the caller's is restored."""
        cwd = os.getcwd()
        try:
            self._dss.Text.Command("clear")
        finally:
            os.chdir(cwd)
        self._finalizer()

    # ------------------------------------------------------------------ solving
    def _push_loads(self) -> None:
        """Write changed loads to the engine, in load order: a prosumer's kW = -injection (its base load x the
        multiplier until it has one), an ordinary load's kW = base x multiplier (not for kvar-only loads), and
        kvar = base x multiplier, for prosumers only when the base multiplier changed."""
        dirty = self._dirty.nonzero()[0]
        if dirty.size:
            m = self._multiplier
            pros, base_kw = self._is_prosumer[dirty], self._kw_base[dirty]
            inj = self._p_inj[dirty]
            inj = np.where(np.isnan(inj), -base_kw * m, inj)
            self._inj_now[dirty[pros]] = inj[pros]
            kw = np.where(pros, -inj, base_kw * m)
            write_kvar = np.ones_like(pros) if self._kvar_dirty else ~pros
            self._writer.write(dirty, kw, pros | (base_kw != 0.0), self._kvar_base[dirty] * m, write_kvar)
        self._dirty[:] = False
        self._kvar_dirty = False

    def _attempt(self, *, flat_start: bool) -> tuple[bool, str]:
        """One solve; True only for a converged, finite solution that delivers the commanded injections."""
        d = self._dss
        try:
            if flat_start:
                # Re-arm (a failed control loop leaves OpenDSS refusing to solve, #99), rebuild every load's
                # admittance (loads set through the API keep the one of their previous kW, which after an
                # absurd value poisons later solves) by re-setting LoadMult, and restart from zero load.
                d.Text.Command("set mode=snapshot")
                d.Text.Command(f"set loadmult={d.Solution.LoadMult()!r}")
                d.Text.Command("init")
            d.Solution.Solve()
        except opendssdirect.dss.DSSException as exc:
            return False, str(exc).replace("\n", " ")
        if not d.Solution.Converged():
            return False, f"not converged after {d.Solution.Iterations()} iterations"
        v = self._v = np.asarray(d.Circuit.AllBusMagPu())
        if not np.all(np.isfinite(v)) or v.max(initial=0.0) > ABSURD_V_PU:
            return False, f"non-physical voltages (max {v.max(initial=0.0):.3g} pu)"
        self._read_pc_powers()
        return self._check_injections()

    def _read_pc_powers(self) -> None:
        """Active power drawn by every load (array, load order) and by all PC elements together, kW."""
        if self._load_batch is not None:
            self._load_p = self._load_batch.TotalPowers().real if len(self._loads) else np.zeros(0)
            total = float(self._load_p.sum())
            for batch in self._other_batches:
                total += float(batch.TotalPowers().real.sum())
        else:
            total = self._read_pc_powers_loop()
        self._pc_total_kw = total

    def _read_pc_powers_loop(self) -> float:
        """Element-by-element fallback of :meth:`_read_pc_powers` when AltDSS is not installed."""
        d = self._dss
        load_p = self._load_p = np.zeros(len(self._loads))
        i = d.Loads.First()
        while i > 0:
            load_p[i - 1] = sum(d.CktElement.Powers()[0::2])
            i = d.Loads.Next()
        total = float(load_p.sum())
        for cls in self._other_pc:
            i = cls.First()
            while i > 0:
                total += sum(d.CktElement.Powers()[0::2])
                i = cls.Next()
        return total

    def _check_injections(self) -> tuple[bool, str]:
        """Prosumers must inject what was commanded (else their voltage left the constant-power band)."""
        idx = self._pros_idx
        actual = -self._load_p[idx]
        wanted = self._inj_now[idx]
        bad = np.flatnonzero(~(np.abs(actual - wanted) <= np.maximum(0.01 * np.abs(wanted), 0.01)))
        outside = []
        for j in bad:
            k, name = int(idx[j]), self._loads[idx[j]].name
            v_pu = self._phase_pu(k)
            low, lo, hi = self._band[k]
            if lo <= v_pu.min() and v_pu.max() <= hi:
                return False, (
                    f"non-physical solution: prosumer {name} injects {actual[j]:.3g} kW instead of "
                    f"{wanted[j]:.3g} kW although it sees {v_pu.min():.3f} pu of its rating, inside its "
                    f"constant-power band {lo:.3g}-{hi:.3g} pu"
                )
            if v_pu.min() <= low:
                return False, (
                    f"voltage collapse: prosumer {name} sees {v_pu.min():.3g} pu of its rating (below Vlowpu "
                    f"{low:.3g}) and injects {actual[j]:.3g} kW instead of {wanted[j]:.3g} kW"
                )
            worst = v_pu.min() if v_pu.min() < lo else v_pu.max()
            outside.append(f"{name} injects {actual[j]:.3g} kW instead of {wanted[j]:.3g} kW at {worst:.3f} pu of "
                           f"its rating, outside its constant-power band {lo:.3g}-{hi:.3g} pu")
        if outside:
            return True, ("converged; OpenDSS models a load outside its band as an impedance: "
                          + "; ".join(outside[:3]) + (f" (+{len(outside) - 3} more)" if len(outside) > 3 else ""))
        return True, "converged"

    def _phase_pu(self, k: int) -> np.ndarray:
        """Voltage across each phase of load ``k`` in the last solve, pu of its own rating."""
        d = self._dss
        d.Loads.Idx(k + 1)
        raw = np.asarray(d.CktElement.Voltages())
        return self._terminals[k].phase_pu(raw[0::2] + 1j * raw[1::2])

    def _retry(self) -> tuple[bool, str]:
        self._apply_limits(self.max_iterations * 4, self.max_control_iterations * 2)
        try:
            ok, message = self._attempt(flat_start=True)
        finally:
            self._apply_limits(self.max_iterations, self.max_control_iterations)
        return ok, message if not ok else "converged on retry (re-armed, flat start, more iterations)"

    def _failed_state(self, message: str) -> FeederState:
        nan = float("nan")
        return FeederState(False, {}, nan, nan, nan, nan, nan, nan, [], {}, message)

    # ------------------------------------------------------------------ extraction
    def _extract(self, message: str) -> FeederState:
        d, v = self._dss, self._v
        head = d.Circuit.TotalPower()
        losses_kw = d.Circuit.Losses()[0] / 1000.0
        pct = np.asarray(d.PDElements.AllPctNorm())[self._pd_mask]
        # Service points are the load nodes; a feeder without loads reports its bus voltage range.
        lo, hi = _row_range(v, self._load_idx if len(self._loads) else self._bus_idx)
        n_loads = len(self._loads)
        return FeederState(
            converged=True,
            v_pu=dict(zip(self._load_names, _furthest_from_one(lo, hi)[:n_loads].tolist(), strict=True)),
            v_min_pu=float(lo.min()),
            v_max_pu=float(hi.max()),
            p_head_kw=-float(head[0]),
            q_head_kvar=-float(head[1]),
            losses_kw=float(losses_kw),
            max_loading_pct=float(pct.max(initial=0.0)),
            violations=self._violations(lo[:n_loads], hi[:n_loads], pct),
            bus_v_pu=_WorstPhaseByBus(self._bus_names, v, self._bus_idx),
            message=message,
        )

    def _violations(self, lo: np.ndarray, hi: np.ndarray, pct: np.ndarray) -> list[Violation]:
        """Voltage violations per load (its worst phase on each side), overloads per line/transformer."""
        return (_beyond("overvoltage", self._load_names, hi, hi > self.v_max_pu, self.v_max_pu)
                + _beyond("undervoltage", self._load_names, lo, lo < self.v_min_pu, self.v_min_pu)
                + _beyond("overload", self._line_names, pct, pct > 100.0, 100.0))

    def load_power_kw(self) -> dict[str, float]:
        """Active power drawn by each load in the last solve (kW; a prosumer's is minus its injection)."""
        return dict(zip(self._load_names, self._load_p.tolist(), strict=True))

    def pc_power_kw(self) -> float:
        """Active power drawn by all loads, generators, PV systems and storage in the last solve (kW,
        generation counts negative)."""
        return self._pc_total_kw

    def _check_balance(self, state: FeederState) -> None:
        consumed = self._pc_total_kw
        gap = state.p_head_kw - (consumed + state.losses_kw)
        scale = max(abs(state.p_head_kw), float(np.abs(self._load_p).sum()), abs(consumed), 1.0)
        if abs(gap) <= BALANCE_REL_TOL * scale:
            return
        text = (
            f"{self.master_path.name}: power balance off by {gap:.3f} kW (head {state.p_head_kw:.3f} kW, "
            f"consumption {consumed:.3f} kW, losses {state.losses_kw:.3f} kW); "
            "the solution is not trustworthy"
        )
        if self.strict:
            raise PhysicsInvariantError(text)
        log.warning(text)

    # ------------------------------------------------------------------ helpers
    def _eligible(self) -> tuple[list[str], dict[str, str]]:
        d, eligible, skipped = self._dss, [], {}
        for k, info in enumerate(self._loads):
            if info.name in self.injectors:
                continue
            d.Loads.Idx(k + 1)
            reason = _ineligible_reason(info, enabled=d.CktElement.Enabled())
            if reason:
                skipped[info.name] = reason
            else:
                eligible.append(info.name)
        return eligible, skipped

    def _choose(self, mode, eligible: list[str], skipped: dict[str, str], seed: int) -> tuple[list[str], str]:
        """The chosen loads, and "" or why fewer were chosen than asked for (a count above the eligible
        loads places them all rather than refusing)."""
        if isinstance(mode, str):
            if mode != "all":
                raise ConfigError(f"placement mode {mode!r} unknown; use 'all', a count, a fraction or names")
            return eligible, ""
        if isinstance(mode, bool) or not isinstance(mode, (int, float, list, tuple)):
            raise ConfigError(f"placement mode {mode!r} unknown; use 'all', a count, a fraction or names")
        if isinstance(mode, (list, tuple)):
            return self._choose_named([str(n).lower() for n in mode], eligible, skipped), ""
        shortfall = ""
        if isinstance(mode, int):
            if mode < 0:
                raise ConfigError(f"prosumer count {mode} must be >= 0")
            count = min(mode, len(eligible))
            if count < mode:
                shortfall = (f"{self.master_path.name} has {len(eligible)} residential-size loads, fewer than the "
                             f"{mode} prosumers asked for: placed {count} (the reasons the others were skipped "
                             "are in the placement table)")
        else:
            if not 0.0 < mode <= 1.0:
                raise ConfigError(f"prosumer fraction {mode} must be in (0, 1]")
            count = min(max(1, round(mode * len(eligible))), len(eligible))
        picked = set(random.Random(seed).sample(eligible, count))
        return [n for n in eligible if n in picked], shortfall

    def _choose_named(self, names: list[str], eligible: list[str], skipped: dict[str, str]) -> list[str]:
        unknown = [n for n in names if n not in self._load_pos]
        if unknown:
            raise ConfigError(
                f"prosumer loads {unknown} not found in {self.master_path.name}; see feeder_info()"
            )
        wanted = set(names)
        for n in list(skipped):
            if n not in wanted:
                del skipped[n]
        return [n for n in eligible if n in wanted]

    def _reset_prosumers(self) -> None:
        d = self._dss
        for k in self._prosumers.values():
            d.Loads.Idx(k + 1)
            d.Loads.Model(self._orig_model[k])
            d.Loads.Vminpu(self._orig_vband[k][0])
            d.Loads.Vmaxpu(self._orig_vband[k][1])
            if k in self._orig_vlow:
                d.Text.Command(f"load.{self._loads[k].name}.vlowpu={self._orig_vlow.pop(k)}")
            self._dirty[k] = True
        self._prosumers = {}
        self._band = {}
        self._is_prosumer[:] = False
        self._p_inj[:] = np.nan
        self._inj_slots = ((), None)
        self._inj_now[:] = np.nan
        self._pros_idx = np.zeros(0, dtype=np.intp)


class _LoadWriter:
    """Writes loads' kW and kvar through the classic Loads API (``Loads.kW`` / ``Loads.kvar`` of the load activated
    by ``Loads.Idx``), each load exactly as those calls would, with the engine's functions bound once and one error
    check per batch instead of per call.

    Not through a property batch (AltDSS ``batch.kW = ...`` or ``load.x.kW=`` commands): that path ends in an edit
    that rebuilds the load's admittance, while the Loads API keeps the admittance of the compiled kW (only
    ``set loadmult`` rebuilds it, see the retry), and the two give different solutions."""

    def __init__(self, d):
        lib = getattr(d.Loads, "_lib", None)
        try:
            self._idx, self._kw, self._kvar = lib.Loads_Set_idx, lib.Loads_Set_kW, lib.Loads_Set_kvar
            self._check = d.Loads._check_for_error
        except AttributeError:  # another opendssdirect layout: its checked wrappers, same calls
            self._idx, self._kw, self._kvar, self._check = d.Loads.Idx, d.Loads.kW, d.Loads.kvar, lambda: None

    def write(self, idx: np.ndarray, kw: np.ndarray, write_kw: np.ndarray, kvar: np.ndarray,
              write_kvar: np.ndarray) -> None:
        """For each 0-based load index in ``idx`` (in that order): activate it, set its kW where ``write_kw``, its
        kvar where ``write_kvar``."""
        set_idx, set_kw, set_kvar = self._idx, self._kw, self._kvar
        for k, p, wp, q, wq in zip((idx + 1).tolist(), kw.tolist(), write_kw.tolist(), kvar.tolist(),
                                   write_kvar.tolist(), strict=True):
            set_idx(k)
            if wp:
                set_kw(p)
            if wq:
                set_kvar(q)
        self._check()


def _finite_floats(values) -> np.ndarray | None:
    """``values`` as a float64 array when every one is a finite Python float, else None (the caller's general path
    then handles ints, NumPy numbers and wrong values as it always did)."""
    values = list(values)
    if set(map(type, values)) - {float}:
        return None
    out = np.array(values, dtype=float)
    return out if np.isfinite(out).all() else None


def _shortest_paths(graph: Mapping[str, Sequence[tuple[str, float]]], source: str) -> dict[str, float]:
    """Dijkstra: the shortest distance from ``source`` to every node reachable in ``graph`` (node -> (node,
    weight >= 0) pairs)."""
    dist = {source: 0.0}
    heap = [(0.0, source)]
    while heap:
        here, node = heapq.heappop(heap)
        if here > dist.get(node, math.inf):
            continue
        for other, weight in graph.get(node, ()):
            there = here + weight
            if there < dist.get(other, math.inf):
                dist[other] = there
                heapq.heappush(heap, (there, other))
    return dist


def _refuse_run_script(master: Path) -> None:
    """Refuse a run script (a file that ``compile``s the real master) before OpenDSS executes it.

    ``compile`` points OpenDSS's DataPath at the compiled file's folder, so the script's later
    ``show`` / ``export`` lines would write reports into the feeder folder (IEEE 123's
    ``Run_IEEE123Bus.DSS`` writes four files there).
    """
    text = master.read_text(errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("!")[0].split("//")[0].split()
        if words and words[0].lower() == "compile":
            raise ConfigError(
                f"{master} line {number} ({line.strip()!r}) compiles another file: this is a run script, "
                "which would write its reports into the feeder folder; give the master file it compiles"
            )


def _altdss_batches(d) -> tuple[object | None, list[object]]:
    """AltDSS batches (all loads; other non-empty PC classes) to read element powers in one call each,
    or (None, []) when the optional ``altdss`` package is missing (element-by-element fallback)."""
    try:
        alt = d.to_altdss()
    except ImportError:
        return None, []
    others = [getattr(alt, c) for c in ("Generator", "PVSystem", "Storage")]
    return alt.Load.batch(), [c.batch() for c in others if len(c.batch())]


def _ineligible_reason(info: LoadInfo, *, enabled: bool) -> str:
    """Why a load cannot be a residential prosumer ("" if it can)."""
    if not enabled:
        return "disabled in the master file"
    if info.kw <= 0.0:
        return f"kvar-only load (kW={info.kw:g}, kvar={info.kvar:g}): a reactive equivalent, not a house"
    if info.phases == 1 and info.kw > RESIDENTIAL_MAX_KW:
        return f"single-phase {info.kw:g} kW is above the residential size ({RESIDENTIAL_MAX_KW:g} kW)"
    if info.phases > 1 and info.kw > SMALL_THREE_PHASE_MAX_KW:
        return (
            f"{info.phases}-phase {info.kw:g} kW is above the small multi-phase size "
            f"({SMALL_THREE_PHASE_MAX_KW:g} kW): an MV / commercial equivalent"
        )
    return ""


def feeder_info(master_path: str | os.PathLike[str]) -> str:
    """A readable summary: buses, base voltages, the voltage range of a base-case solve, and every load (name,
    bus, phases, kW) with whether it can host a prosumer (how many houses it stands for) or why not."""
    model = FeederModel(master_path)
    try:
        d = model._dss
        bases = sorted({round(b, 4) for b in d.Settings.VoltageBases()})
        state = model.solve()
        loads = model.loads()
        placement = model.place_prosumers("all", seed=0) if loads else Placement([], {})
        rows = [(x.name, x.bus, str(x.phases), f"{x.kw:.2f}",
                 f"yes ({placement.houses.get(x.name, 1)} houses)" if x.name in placement.loads
                 else f"no: {placement.skipped.get(x.name, 'not eligible')}") for x in loads]
        head = ("load", "bus", "phases", "kW", "prosumer")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
        lines = [
            f"feeder {d.Circuit.Name()} ({model.master_path})",
            f"buses: {d.Circuit.NumBuses()}  nodes: {d.Circuit.NumNodes()}  loads: {len(loads)}",
            f"base voltages (kV L-L): {bases}",
            f"base case: converged={state.converged} "
            f"service voltage {state.v_min_pu:.4f}-{state.v_max_pu:.4f} pu, "
            f"head {state.p_head_kw:.1f} kW / {state.q_head_kvar:.1f} kvar, losses {state.losses_kw:.1f} kW",
            f"eligible for prosumers: {len(placement.loads)} of {len(loads)} loads "
            "(residential size: single-phase <= 50 kW or multi-phase <= 30 kW, kW > 0, enabled)",
        ]
        lines += ["  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]),
                             r[3].rjust(widths[3]), r[4]]) for r in [head, *rows]]
        return "\n".join(lines)
    finally:
        model.close()
