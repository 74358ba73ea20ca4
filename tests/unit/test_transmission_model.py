"""The transmission power flow (federates/transmission/model.py): hand-sized known answers, MATPOWER's published
case9 solution, and balances recomputed from the solved voltages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pypower.makeYbus import makeYbus

from federates.common.errors import ConfigError
from federates.transmission.model import CASES, Attachment, Oltc, TransmissionModel, case_buses, load_case


def two_bus(r_pu: float = 0.0, x_pu: float = 0.1, p_mw: float = 100.0, q_mvar: float = 0.0) -> dict:
    """Slack bus 1 at 1.0 pu feeding a load at bus 2 over one line (100 MVA base, no charging)."""
    bus = np.array([[1, 3, 0, 0, 0, 0, 1, 1.0, 0, 100, 1, 1.1, 0.9],
                    [2, 1, p_mw, q_mvar, 0, 0, 1, 1.0, 0, 100, 1, 1.1, 0.9]], dtype=float)
    gen = np.array([[1, 0, 0, 999, -999, 1.0, 100, 1, 999, 0]], dtype=float)
    branch = np.array([[1, 2, r_pu, x_pu, 0, 0, 0, 0, 0, 0, 1, -360, 360]], dtype=float)
    return {"version": "2", "baseMVA": 100.0, "bus": bus, "gen": gen, "branch": branch}


def test_two_bus_lossless_line_matches_the_closed_form():
    # Receiving end of a lossless line: V^4 + V^2 (2 Q x - V1^2) + x^2 (P^2 + Q^2) = 0 (pu), sin d = P x / (V1 V)
    p, q, x = 1.0, 0.2, 0.1
    b = 1.0 - 2 * q * x
    v2 = math.sqrt((b + math.sqrt(b * b - 4 * x * x * (p * p + q * q))) / 2)
    delta = -math.degrees(math.asin(p * x / v2))
    state = TransmissionModel(two_bus(p_mw=100 * p, q_mvar=100 * q, x_pu=x)).solve({})
    assert state.converged
    assert state.v_pu[1] == pytest.approx(v2, abs=1e-6)          # 0.9730 pu
    assert state.angle_deg[1] == pytest.approx(delta, abs=1e-4)   # -5.90 deg
    assert state.losses_mw == pytest.approx(0.0, abs=1e-6)
    assert state.p_gen_mw == pytest.approx(100.0, abs=1e-6)


def test_two_bus_losses_are_i_squared_r():
    state = TransmissionModel(two_bus(r_pu=0.02, x_pu=0.1, p_mw=80.0, q_mvar=30.0)).solve({})
    v2 = state.v_pu[1] * np.exp(1j * np.radians(state.angle_deg[1]))
    current = np.conj((0.8 + 0.3j) / v2)  # pu, load current at bus 2
    assert state.losses_mw == pytest.approx(100 * abs(current) ** 2 * 0.02, rel=1e-6)
    assert state.p_gen_mw == pytest.approx(80.0 + state.losses_mw, abs=1e-6)


def test_case9_reproduces_matpowers_published_solution():
    # MATPOWER 4-8 `runpf('case9')` (the same data as PYPOWER's case9): bus voltages, angles, losses 4.955 MW,
    # slack generator 71.95 MW
    state = TransmissionModel("case9").solve({})
    assert list(state.bus) == list(range(1, 10))
    assert np.round(state.v_pu, 3).tolist() == [1.0, 1.0, 1.0, 0.987, 0.975, 1.003, 0.986, 0.996, 0.958]
    assert np.round(state.angle_deg, 2).tolist() == [0.0, 9.67, 4.77, -2.41, -4.02, 1.93, 0.62, 3.8, -4.35]
    assert state.losses_mw == pytest.approx(4.955, abs=1e-3)
    assert state.p_gen_mw == pytest.approx(315.0 + 4.955, abs=1e-3)


def test_bus_injections_recomputed_from_the_voltages_balance_gen_minus_load():
    """case118 has shunts and transformers: S = V conj(Y V) at every bus is its generation minus its load and
    shunt, and the totals give gen = load + shunt + losses."""
    model = TransmissionModel("case118", [Attachment("f", 59, copies=500)])
    state = model.solve({"f": (200.0, 50.0)}, load_multiplier=0.8)
    assert state.converged
    case = load_case("case118")
    ybus, _, _ = makeYbus(case["baseMVA"], model._bus, model._branch)
    v = state.v_pu * np.exp(1j * np.radians(state.angle_deg))
    s_mva = v * np.conj(ybus @ v) * case["baseMVA"]
    assert state.p_gen_mw == pytest.approx(state.p_load_mw.sum() + state.shunt_mw + state.losses_mw, abs=1e-6)
    assert s_mva.real.sum() == pytest.approx(state.losses_mw + state.shunt_mw, abs=1e-5)
    pq = np.setdiff1d(np.arange(len(v)), model._gen[:, 0].astype(int))  # buses without a generator
    assert np.abs(s_mva[pq].real + state.p_load_mw[pq]).max() < 1e-5   # a load bus injects minus its load


def test_more_load_at_a_bus_lowers_its_voltage_and_reverse_flow_raises_it():
    model = TransmissionModel("case39", [Attachment("f", 4, copies=200)])
    base = model.solve({"f": (0.0, 0.0)}).v_bus_pu["f"]
    loaded = model.solve({"f": (200.0, 60.0)}).v_bus_pu["f"]      # 40 MW, 12 Mvar more at bus 4
    exporting = model.solve({"f": (-200.0, 0.0)}).v_bus_pu["f"]   # the feeders export 40 MW
    assert loaded < base - 1e-3 and exporting > base + 5e-4


def test_copies_multiply_the_feeders_power_and_the_case_load_follows_the_multiplier():
    one = TransmissionModel("case39", [Attachment("f", 4, copies=1)]).solve({"f": (20_000.0, 5_000.0)}, 0.6)
    many = TransmissionModel("case39", [Attachment("f", 4, copies=100)]).solve({"f": (200.0, 50.0)}, 0.6)
    assert np.allclose(one.v_pu, many.v_pu, atol=1e-12)
    case_load = load_case("case39")["bus"][:, 2].sum()
    assert many.feeders_p_mw.sum() == pytest.approx(20.0)
    assert many.feeders_p_mw[3] == pytest.approx(20.0) and many.feeders_q_mvar[3] == pytest.approx(5.0)
    assert many.p_load_mw.sum() == pytest.approx(0.6 * case_load + 20.0)


def test_the_feeder_sees_its_tap_times_the_bus_voltage():
    state = TransmissionModel("case39", [Attachment("a", 4, tap_pu=1.02), Attachment("b", 4, tap_pu=1.0)]).solve({})
    assert state.v_source_pu["a"] == pytest.approx(1.02 * state.v_bus_pu["a"])
    assert state.v_source_pu["b"] == pytest.approx(state.v_bus_pu["a"])  # the same bus
    assert state.v_bus_pu["a"] == pytest.approx(1.0045, abs=1e-4)       # case39's published bus 4 voltage


def test_a_diverging_step_is_reported_and_the_next_one_recovers():
    model = TransmissionModel("case39", [Attachment("f", 4, copies=200_000)])
    failed = model.solve({"f": (50.0, 10.0)})   # 10 GW at one bus
    assert not failed.converged and math.isnan(failed.v_bus_pu["f"]) and math.isnan(failed.losses_mw)
    assert "did not converge" in failed.message and "10000.0 MW from the feeders" in failed.message
    assert model.solve({"f": (0.05, 0.01)}).converged


def test_bad_cases_buses_and_copies_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="case1234.*case39"):
        load_case("case1234")
    with pytest.raises(ConfigError, match="bus 99 is not a bus of case39 .buses 1-39"):
        TransmissionModel("case39", [Attachment("f", 99)])
    with pytest.raises(ConfigError, match="copies 0 must be >= 1"):
        TransmissionModel("case39", [Attachment("f", 4, copies=0)])
    with pytest.raises(ConfigError, match="not attached"):
        TransmissionModel("case39").solve({"g": (1.0, 0.0)})


@pytest.mark.parametrize("name", CASES)
def test_every_listed_case_solves_as_given(name):
    state = TransmissionModel(name).solve({})
    assert state.converged and len(state.bus) == len(case_buses(load_case(name)))
    assert state.p_gen_mw == pytest.approx(state.p_load_mw.sum() + state.shunt_mw + state.losses_mw, abs=1e-5)


def test_the_oltc_steps_to_the_nearest_tap_outside_its_band_and_holds_inside():
    oltc = Oltc(band_pu=0.01, step_pu=0.00625, max_steps=16)
    assert oltc.step_for(0, 1.005, 1.0) == 0            # inside the band: no move
    assert oltc.step_for(0, 1.06, 1.0) == -9            # 1.06 x (1 - 9 x 0.00625) = 1.0004 (nearest step)
    assert oltc.step_for(-9, 1.055, 1.0) == -9          # 1.055 x 0.94375 = 0.9957: back inside, it holds
    assert oltc.step_for(-9, 1.0, 1.0) == 0             # 0.94375 is below the band: back to the nearest step
    assert oltc.step_for(0, 0.80, 1.0) == 16            # wants 40 steps: at its limit
    assert oltc.step_for(0, 1.5, 1.0) == -16


def test_an_oltc_holds_the_source_voltage_where_a_fixed_tap_lets_the_bus_through():
    """Feeder on a two-bus system: heavy load pulls the bus to ~0.94 pu; the fixed tap passes it through, the OLTC
    brings the source back within its band of the target and remembers its step for the next solve."""
    fixed = TransmissionModel(two_bus(p_mw=0.0, x_pu=0.1), [Attachment("f", 2, copies=1000)])
    oltc = Oltc(band_pu=0.01, step_pu=0.00625, max_steps=16)
    held = TransmissionModel(two_bus(p_mw=0.0, x_pu=0.1), [Attachment("f", 2, copies=1000, oltc=oltc,
                                                                       target_pu=1.0)])
    heavy = {"f": (200.0, 40.0)}  # 1000 x 200 kW = 200 MW
    a, b = fixed.solve(heavy), held.solve(heavy)
    assert a.v_bus_pu["f"] == pytest.approx(b.v_bus_pu["f"]) and a.v_bus_pu["f"] < 0.95
    assert a.v_source_pu["f"] == pytest.approx(a.v_bus_pu["f"]) and a.tap_step == {"f": 0}
    step = b.tap_step["f"]
    assert step > 0 and abs(b.v_source_pu["f"] - 1.0) <= 0.01
    assert b.v_source_pu["f"] == pytest.approx(b.v_bus_pu["f"] * (1 + step * 0.00625))
    light = held.solve({"f": (0.0, 0.0)})  # the bus is back at 1.0: the boosted source leaves the band, tap returns
    assert light.tap_step["f"] == 0 and light.v_source_pu["f"] == pytest.approx(1.0, abs=1e-6)
