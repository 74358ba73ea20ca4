"""FeederModel writes loads to OpenDSS in one batch per step (set_injections on arrays, ``_LoadWriter``); these tests
pin that it leaves the engine exactly as the straightforward per-load writes did, bit for bit.

The reference (:class:`PerLoad`) is the former algorithm, kept here as the oracle: one dict entry per injection, a
set of changed loads, and per changed load ``Loads.Idx`` -> ``Loads.kW`` -> ``Loads.kvar`` through opendssdirect's
checked wrappers. It drives a second model's engine (same master, same placement); after every step both engines
must hold the same kW, kvar and power factor for every load and solve to the same node voltages.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import opendssdirect
import pytest

from federates.common.errors import ConfigError
from federates.feeder.model import FeederModel, _LoadWriter

MASTER = (
    "Clear\nNew Circuit.t basekv=0.416 pu=1.0 bus1=src MVAsc3=100 MVAsc1=100\n"
    "New Line.l1 bus1=src bus2=b phases=3 r1=0.05 x1=0.01 r0=0.15 x0=0.03 length=1 units=km\n"
    "New Line.l2 bus1=b bus2=c phases=3 r1=0.05 x1=0.01 r0=0.15 x0=0.03 length=0.5 units=km\n"
    "New Load.h1 bus1=b.1 phases=1 kV=0.24 kW=4 kvar=1\n"
    "New Load.h2 bus1=c.2 phases=1 kV=0.24 kW=3 kvar=1.3\n"
    "New Load.h3 bus1=c.3 phases=1 kV=0.24 kW=5.5 kvar=0.7\n"
    "New Load.shop bus1=c phases=3 kV=0.416 kW=20 kvar=5\n"
    "New Load.factory bus1=b phases=3 kV=0.416 kW=100 kvar=30\n"
    "New Load.qcomp bus1=b phases=3 kV=0.416 kW=0 kvar=15\n"
    "Set VoltageBases=[0.416]\nCalcVoltageBases\n"
)


class PerLoad:
    """The former load writes, on another model's engine (its own FeederModel state is never used)."""

    def __init__(self, model: FeederModel):
        self.d, self.loads = model._dss, model.loads()
        self.index = {x.name: k for k, x in enumerate(self.loads)}
        self.m, self.inj, self.dirty, self.kvar_dirty, self.prosumers = 1.0, {}, set(), False, set()

    def placed(self, names) -> None:  # what place_prosumers marks: the previous and the new prosumers
        self.dirty |= {self.index[n] for n in self.prosumers | set(names)}
        self.prosumers, self.inj, self.kvar_dirty = set(names), {}, True

    def set_base_multiplier(self, m: float) -> None:
        if m != self.m:
            self.m, self.kvar_dirty = float(m), True
            self.dirty.update(range(len(self.loads)))

    def set_injections(self, p_kw: dict) -> None:
        for name, p in p_kw.items():
            key = name.lower()
            if self.inj.get(key) != p:
                self.inj[key] = float(p)
                self.dirty.add(self.index[key])

    def solve(self) -> None:
        d, m = self.d, self.m
        for k in sorted(self.dirty):
            info = self.loads[k]
            d.Loads.Idx(k + 1)
            if info.name in self.prosumers:
                d.Loads.kW(-self.inj.get(info.name, -info.kw * m))
            elif info.kw != 0.0:
                d.Loads.kW(info.kw * m)
            if self.kvar_dirty or info.name not in self.prosumers:
                d.Loads.kvar(info.kvar * m)
        self.dirty.clear()
        self.kvar_dirty = False
        d.Solution.Solve()


def engine_loads(model: FeederModel) -> bytes:
    """kW, kvar and power factor of every load in the engine, as bytes (so that even -0.0 != 0.0)."""
    d, out = model._dss, []
    for k in range(1, d.Loads.Count() + 1):
        d.Loads.Idx(k)
        out += [d.Loads.kW(), d.Loads.kvar(), d.Loads.PF()]
    return np.array(out).tobytes()


@pytest.fixture
def pair(tmp_path):
    master = tmp_path / "Master.dss"
    master.write_text(MASTER)
    model, twin = FeederModel(master, strict=True), FeederModel(master, strict=True)
    ref = PerLoad(twin)

    def place(names):
        assert model.place_prosumers(names, seed=0).loads == twin.place_prosumers(names, seed=0).loads
        ref.placed(names)

    def step(multiplier=None, injections=None):
        for target in (model, ref):
            if multiplier is not None:
                target.set_base_multiplier(multiplier)
            if injections is not None:
                target.set_injections(injections)
        assert model.solve().converged
        ref.solve()
        assert engine_loads(model) == engine_loads(twin)
        got, want = np.asarray(model._dss.Circuit.AllBusVolts()), np.asarray(twin._dss.Circuit.AllBusVolts())
        assert got.tobytes() == want.tobytes()

    return model, place, step


def test_batched_load_writes_leave_the_engine_as_per_load_writes(pair):
    model, place, step = pair
    place(["h1", "h2", "h3", "shop"])
    step()                                                        # prosumers at their base load, nothing else
    step(0.7, {"h1": 2.5, "h2": -1.25})                           # every load rewritten; h3, shop at base x 0.7
    step(None, {"h1": 3.75, "h2": -1.25})                         # h1's kW only: OpenDSS re-derives its kvar
    step(None, {"h1": 3.75, "h2": -1.25})                         # nothing changed: nothing written
    step(None, {"H3": 1, "shop": np.float64(-6.5), "h1": 0.0})    # other names, ints and NumPy numbers
    step(None, {"h1": -0.0})                                      # -0.0 == 0.0: not a change
    step(0.45, {"h1": 1.0, "h2": 2.0, "h3": -3.0, "shop": 4.0})
    place(["h2", "shop"])                                         # re-placement: h1, h3 back to ordinary loads
    step(0.45)
    step(0.9, {"shop": -2.0, "h2": 0.5})


def test_re_placement_forgets_the_previous_prosumers_names(pair):
    model, place, step = pair
    place(["h1", "h2"])
    step(0.8, {"h1": 1.0, "h2": 1.0})
    place(["h2"])
    with pytest.raises(ConfigError, match="'h1' is not a prosumer load"):
        model.set_injections({"h1": 1.0, "h2": 1.0})
    step(0.8, {"h2": 1.5})


def test_bad_injections_are_refused_whole_on_the_batch_path_too(pair):
    model, place, step = pair
    place(["h1", "h2"])
    step(0.8, {"h1": 1.0, "h2": 1.0})
    for bad in ({"h1": 2.0, "h2": float("nan")}, {"h1": 2.0, "h2": float("inf")}):
        with pytest.raises(ConfigError, match="must be a finite number of kW"):
            model.set_injections(bad)
    step(None, {"h1": 1.0, "h2": 1.0})  # the refused calls changed nothing


def test_an_engine_error_in_a_batch_is_raised(pair):
    model, place, _ = pair
    place(["h1"])
    n = len(model.loads())
    with pytest.raises(opendssdirect.dss.DSSException, match="Invalid Load index"):
        model._writer.write(np.array([0, n]), np.ones(2), np.ones(2, bool), np.ones(2), np.ones(2, bool))


def test_the_checked_wrappers_write_what_the_bound_functions_write(tmp_path):
    """Without opendssdirect's internals (``Loads._lib``) the writer falls back to its public checked calls."""
    master = tmp_path / "Master.dss"
    master.write_text(MASTER)
    bound, public = FeederModel(master), FeederModel(master)
    loads = public._dss.Loads
    fallback = _LoadWriter(SimpleNamespace(Loads=SimpleNamespace(Idx=loads.Idx, kW=loads.kW, kvar=loads.kvar)))
    assert fallback._idx == loads.Idx
    args = (np.array([0, 2, 5]), np.array([1.5, -2.0, 0.0]), np.array([True, True, False]), np.array([0.5, 0.25, 7.0]),
            np.array([True, False, True]))
    bound._writer.write(*args)
    fallback.write(*args)
    assert engine_loads(bound) == engine_loads(public)
    with pytest.raises(opendssdirect.dss.DSSException, match="Invalid Load index"):
        fallback.write(np.array([99]), np.ones(1), np.ones(1, bool), np.ones(1), np.ones(1, bool))
