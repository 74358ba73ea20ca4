"""ANSI C84.1 range A on a real feeder: a load is flagged exactly when its service voltage leaves [0.95, 1.05].

The older check only asked that flagged loads were above 1.05 pu, so a threshold of 1.06 passed it. Here the
set of flagged loads must EQUAL the set of loads outside the range, on states that have loads just outside it
(between 1.05 and 1.06 pu, and between 0.94 and 0.95 pu).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from federates.common.config import FeederConfig
from federates.feeder.model import FeederModel

RURAL = Path(__file__).resolve().parents[2] / "feeders" / "lv_rural" / "Master.dss"
UNDER_MULTIPLIER = 2.0  # twice the nominal load: some loads just below 0.95 pu, some far below


def _state(multiplier: float, prosumer_kw: tuple[float, float] | None):
    model = FeederModel(RURAL, strict=True)
    base = {x.name: x.kw for x in model.loads()}
    model.set_base_multiplier(multiplier)
    if prosumer_kw is not None:
        prosumers = model.place_prosumers(20, seed=3).loads
        rng = random.Random(8)
        model.set_injections({n: rng.uniform(*prosumer_kw) - multiplier * base[n] for n in prosumers})
    state = model.solve()
    assert state.converged
    return model, state


def test_range_a_is_the_default_everywhere():
    assert FeederConfig.model_fields["v_max_pu"].default == 1.05
    assert FeederConfig.model_fields["v_min_pu"].default == 0.95
    model = FeederModel(RURAL)
    assert (model.v_min_pu, model.v_max_pu) == (0.95, 1.05)


def test_every_load_above_1_05_pu_is_flagged_and_no_other():
    _, state = _state(0.4, (6.0, 8.0))  # midday PV export on the weak rural feeder
    high = {load for load, v in state.v_pu.items() if v > 1.05}
    assert any(1.05 < v <= 1.06 for v in state.v_pu.values()), "the state must have loads just above 1.05"
    flagged = [v for v in state.violations if v.kind == "overvoltage"]
    assert {v.element for v in flagged} == high
    assert all(v.limit == 1.05 and v.value == pytest.approx(state.v_pu[v.element]) for v in flagged)


def test_every_load_below_0_95_pu_is_flagged_and_no_other():
    _, state = _state(UNDER_MULTIPLIER, None)  # evening peak, no PV
    low = {load for load, v in state.v_pu.items() if v < 0.95}
    assert any(0.94 <= v < 0.95 for v in state.v_pu.values()), "the state must have loads just below 0.95"
    flagged = [v for v in state.violations if v.kind == "undervoltage"]
    assert {v.element for v in flagged} == low
    assert all(v.limit == 0.95 and v.value == pytest.approx(state.v_pu[v.element]) for v in flagged)
