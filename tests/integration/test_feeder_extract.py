"""FeederModel's extraction of a solved step, taken in vectorised passes (per-phase columns, violations from index
arrays, the bus map worked out only when read), against straightforward per-row / per-element computations."""

from __future__ import annotations

import numpy as np
import pytest

from federates.feeder.model import FeederModel, Violation, _beyond, _padded, _row_range

MASTER = (
    "Clear\nNew Circuit.t basekv=0.416 pu=1.0 bus1=src MVAsc3=100 MVAsc1=100\n"
    "New Capacitor.cap bus1=src phases=3 kvar=0.5 kV=0.416\n"  # a PD element that is no line: not an overload
    "New Line.l1 bus1=src bus2=b phases=3 r1=0.05 x1=0.01 r0=0.15 x0=0.03 length=1 units=km normamps=400\n"
    "New Line.l2 bus1=b bus2=c phases=3 r1=0.05 x1=0.01 r0=0.15 x0=0.03 length=0.5 units=km normamps=20\n"
    "New Line.l3 bus1=c.1 bus2=d.1 phases=1 r1=0.2 x1=0.05 r0=0.2 x0=0.05 length=0.3 units=km normamps=5\n"
    "New Load.h1 bus1=b.1 phases=1 kV=0.24 kW=4 kvar=1\n"
    "New Load.h2 bus1=c.2 phases=1 kV=0.24 kW=3 kvar=1.3\n"
    "New Load.h3 bus1=d.1 phases=1 kV=0.24 kW=5.5 kvar=0.7\n"
    "New Load.shop bus1=c phases=3 kV=0.416 kW=20 kvar=5\n"
    "Set VoltageBases=[0.416]\nCalcVoltageBases\n"
)


def test_row_range_is_the_min_and_max_of_each_row():
    v = np.array([1.0, 0.97, 1.02, 0.9, 1.1, 1.0])
    idx = _padded([[0, 1, 2], [3], [4, 5], [1, 4, 3]])
    lo, hi = _row_range(v, idx)
    assert lo.tolist() == [0.97, 0.9, 1.0, 0.9] and hi.tolist() == [1.02, 0.9, 1.1, 1.1]
    lo, hi = _row_range(v, np.zeros((0, 1), dtype=np.intp))
    assert lo.shape == hi.shape == (0,)


def test_beyond_lists_the_elements_past_a_limit_in_order():
    values = np.array([1.06, 1.05, 1.2, 0.9])
    assert _beyond("overvoltage", ["a", "b", "c", "d"], values, values > 1.05, 1.05) == [
        Violation("overvoltage", "a", 1.06, 1.05), Violation("overvoltage", "c", 1.2, 1.05)]  # 1.05 itself is fine
    assert _beyond("overload", ["a", "b", "c", "d"], values, values > 9.0, 9.0) == []


@pytest.fixture
def model(tmp_path):
    master = tmp_path / "Master.dss"
    master.write_text(MASTER)
    return FeederModel(master, strict=True)


def worst_by_bus(model: FeederModel) -> dict[str, float]:
    """Per bus, the phase (node 1-3) voltage furthest from 1 pu (the lower one on a tie), node by node."""
    phases: dict[str, list[float]] = {}
    for node, v in model.node_voltages_pu().items():
        bus, _, n = node.rpartition(".")
        if n in ("1", "2", "3"):
            phases.setdefault(bus, []).append(v)
    return {bus: max(vs) if max(vs) - 1.0 > 1.0 - min(vs) else min(vs) for bus, vs in phases.items()}


def test_bus_voltages_are_the_worst_phase_of_that_solve(model):
    model.place_prosumers(["h1", "h2", "h3"], seed=0)
    model.set_injections({"h1": 12.0, "h2": 9.0, "h3": 6.0})  # export: some buses above 1 pu
    high = model.solve()
    want_high = worst_by_bus(model)
    model.set_base_multiplier(3.0)
    model.set_injections({"h1": -15.0, "h2": -15.0, "h3": -8.0})
    low = model.solve()
    assert dict(low.bus_v_pu) == worst_by_bus(model)
    assert dict(high.bus_v_pu) == want_high  # read after the next solve: still its own solve's voltages
    assert any(v > 1.0 for v in want_high.values()) and any(v < 1.0 for v in want_high.values())
    assert len(high.bus_v_pu) == len(want_high) and set(high.bus_v_pu) == set(want_high)
    assert high.bus_v_pu == want_high and repr(high.bus_v_pu) == repr(want_high)


def test_overloads_are_the_lines_past_their_normal_amps(model):
    model.set_base_multiplier(2.5)
    state = model.solve()
    d, want = model._dss, {}
    i = d.PDElements.First()
    while i > 0:  # loading: the largest current magnitude at terminal 1 in % of normal amps
        name = d.CktElement.Name().lower()
        amps = d.CktElement.CurrentsMagAng()[0:2 * d.CktElement.NumPhases():2]
        pct = 100.0 * max(amps) / d.CktElement.NormalAmps()
        if name.startswith(("line.", "transformer.")) and pct > 100.0:
            want[name] = pct
        i = d.PDElements.Next()
    got = [v for v in state.violations if v.kind == "overload"]
    assert list(want) == ["line.l2", "line.l3"]
    assert [v.element for v in got] == list(want) and {v.limit for v in got} == {100.0}
    assert [v.value for v in got] == pytest.approx(list(want.values()), rel=1e-9)
    assert state.max_loading_pct == max(v.value for v in got)
