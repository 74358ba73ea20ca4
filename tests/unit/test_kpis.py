"""Physical energy KPIs and the stored-energy term of ``runner.results`` on hand-sized cases."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from federates.common.config import Scenario
from federates.common.tables import TABLES
from runner.results import (
    community_figures,
    energy_kpis,
    local_consumption,
    periodic_local_consumption,
    prosumer_kpis,
)
from runner.storage import batteries, efficiencies, inferred_efficiencies, stored_energy_prices, stored_energy_value

HOUR = 12  # 5-min steps
NO_LEDGER = pd.DataFrame(columns=list(TABLES["ledger"]))
FLAT = (0.20, 0.05)  # retail, export $/kWh


def steps_frame(houses: dict[str, dict], n: int = HOUR, feeder: str = "f") -> pd.DataFrame:
    """prosumer_steps rows: ``houses`` maps name -> constant pv_kw, load_kw, battery_kw, soc0_kwh, eta (SOC
    recorded after each step, as the fleet does)."""
    rows = []
    for name, h in houses.items():
        soc, eta = h.get("soc0_kwh", 0.0), h.get("eta", 1.0)
        for k in range(n):
            b = h.get("battery_kw", 0.0)
            soc -= b / 12 / eta if b > 0 else b / 12 * eta
            grid = h["pv_kw"] - h["load_kw"] + b
            rows.append({"time": k * 300.0, "prosumer": name, "feeder": h.get("feeder", feeder), "pv_kw": h["pv_kw"],
                         "load_kw": h["load_kw"], "flex_kw": 0.0, "battery_kw": b, "soc_kwh": soc, "grid_kw": grid,
                         "curtailed_kw": 0.0, "p2p_commit_kw": 0.0, "reserve_up_kw": 0.0, "reserve_down_kw": 0.0,
                         "delta_p_kw": 0.0, "unmet_flex_kwh": 0.0})
    return pd.DataFrame(rows)


def figures(steps: pd.DataFrame, eta: float = 1.0, ledger: pd.DataFrame = NO_LEDGER, prices=FLAT):
    names = sorted(steps["prosumer"].unique())
    bat = batteries(steps, pd.DataFrame({"eta_charge": eta, "eta_discharge": eta}, index=names))
    trades = pd.DataFrame(columns=list(TABLES["trades"]))
    per = prosumer_kpis(ledger, steps, trades, bat, prices)
    return per.set_index("prosumer"), energy_kpis(per, community_figures(steps, bat), 0.0)


def test_three_houses_without_trades_share_their_pv_inside_the_community():
    # one hour: loads 4/4/4 kWh, PV 0/2/8 kWh; the third house's surplus feeds its neighbours
    steps = steps_frame({"a": {"pv_kw": 0.0, "load_kw": 4.0}, "b": {"pv_kw": 2.0, "load_kw": 4.0},
                         "c": {"pv_kw": 8.0, "load_kw": 4.0}})
    per, k = figures(steps)
    assert k["self_sufficiency_pct"] == pytest.approx(100 * 10 / 12)
    assert k["self_consumption_pct"] == pytest.approx(100.0)
    assert k["self_sufficiency_pct_f"] == pytest.approx(100 * 10 / 12)
    assert per["self_sufficiency_pct"].tolist() == pytest.approx([0.0, 50.0, 100.0])
    assert np.isnan(per.loc["a", "self_consumption_pct"])  # no PV: undefined
    assert per.loc[["b", "c"], "self_consumption_pct"].tolist() == pytest.approx([100.0, 50.0])
    # behind the meter: 0 + 2 + 4 of 12 kWh demand, of 10 kWh production
    assert k["self_sufficiency_prosumer_pct"] == pytest.approx(100 * 6 / 12)
    assert k["self_consumption_prosumer_pct"] == pytest.approx(100 * 6 / 10)


def test_feeders_are_separate_communities():
    steps = steps_frame({"a": {"pv_kw": 0.0, "load_kw": 4.0, "feeder": "n"},
                         "c": {"pv_kw": 8.0, "load_kw": 4.0, "feeder": "s"}})
    _, k = figures(steps)
    assert k["self_sufficiency_pct_n"] == 0.0 and k["self_sufficiency_pct_s"] == pytest.approx(100.0)
    assert k["self_sufficiency_pct"] == pytest.approx(50.0)  # energy-weighted over the feeders
    assert k["self_consumption_pct_s"] == pytest.approx(50.0)


def one_house(pv, load, battery, start_kwh=0.0, share=0.0, eta=1.0):
    """Hour-long steps for one house (rows = hours)."""
    col = np.array  # (steps x 1 unit)
    return local_consumption(col(pv, float)[:, None], col(load, float)[:, None], col(battery, float)[:, None],
                             [0], start_kwh, eta, eta, start_local_share=share, dt_h=1.0)


def test_battery_energy_keeps_its_origin():
    from_pv = one_house(pv=[4, 0], load=[0, 4], battery=[-4, 4])
    assert from_pv.pv_used_kwh[0] == pytest.approx(4.0), "PV stored at noon and used in the evening is local"
    from_grid = one_house(pv=[0, 0], load=[0, 4], battery=[-4, 4])
    assert from_grid.local_supply_kwh[0] == 0.0, "grid energy shifted through the battery is not"
    half = one_house(pv=[2, 0], load=[0, 4], battery=[-4, 4])
    assert half.local_supply_kwh[0] == pytest.approx(2.0)  # half PV, half grid, well mixed
    assert half.consumed_kwh[0].tolist() == pytest.approx([2.0, 0.0, 2.0])
    lossy = one_house(pv=[4, 0], load=[0, 4 * 0.81], battery=[-4, 4 * 0.81], eta=0.9)
    assert lossy.pv_used_kwh[0] == pytest.approx(4 * 0.81) and lossy.stored_kwh.sum() == pytest.approx(0.0)


def test_start_energy_is_not_local_unless_the_battery_recharges_from_pv():
    drained = one_house(pv=[0], load=[3], battery=[3], start_kwh=5.0)
    assert drained.local_supply_kwh[0] == 0.0 and drained.stored_kwh[0].tolist() == pytest.approx([0, 0, 2.0])
    args = (np.array([[0.0], [6.0]]), np.array([[3.0], [0.0]]), np.array([[3.0], [-6.0]]), [0], 5.0, 1.0, 1.0)
    cycle = periodic_local_consumption(*args, dt_h=1.0)  # evening use of stored energy, refilled by PV the next noon
    assert cycle.local_supply_kwh[0] == pytest.approx(3.0) and cycle.stored_kwh[0].tolist() == pytest.approx([6, 2, 0])
    assert cycle.pv_used_kwh[0] == 0.0, "the evening used yesterday's PV, not today's"


def test_neighbour_pv_charging_a_battery_is_local_to_the_community_only():
    # hour 1: a exports 4 kWh of PV, b charges 4 kWh; hour 2: b discharges 4 kWh into its load
    steps = pd.concat([steps_frame({"a": {"pv_kw": 4.0, "load_kw": 0.0},
                                    "b": {"pv_kw": 0.0, "load_kw": 0.0, "battery_kw": -4.0}}),
                       steps_frame({"a": {"pv_kw": 0.0, "load_kw": 0.0},
                                    "b": {"pv_kw": 0.0, "load_kw": 4.0, "battery_kw": 4.0, "soc0_kwh": 4.0}})
                       .assign(time=lambda d: d["time"] + 3600)], ignore_index=True)
    per, k = figures(steps)
    assert k["self_sufficiency_pct"] == pytest.approx(100.0) and k["self_consumption_pct"] == pytest.approx(100.0)
    assert per.loc["b", "self_sufficiency_pct"] == 0.0  # behind b's meter it came from outside
    assert per.loc["b", "stored_energy_change_kwh"] == pytest.approx(0.0)


def test_start_energy_is_reconstructed_from_the_first_record():
    steps = steps_frame({"d": {"pv_kw": 0.0, "load_kw": 1.2, "battery_kw": 1.2, "soc0_kwh": 6.0, "eta": 0.9},
                         "c": {"pv_kw": 5.0, "load_kw": 0.0, "battery_kw": -3.0, "soc0_kwh": 2.0, "eta": 0.9},
                         "n": {"pv_kw": 1.0, "load_kw": 1.0}})
    bat = batteries(steps, pd.DataFrame({"eta_charge": 0.9, "eta_discharge": 0.9}, index=["c", "d", "n"]))
    assert bat["battery_start_kwh"].tolist() == pytest.approx([2.0, 6.0, 0.0])
    assert bat["battery_end_kwh"].tolist() == pytest.approx([2.0 + 3 * 0.9, 6.0 - 1.2 / 0.9, 0.0])
    eta = inferred_efficiencies(steps)
    assert eta.loc["c", "eta_charge"] == pytest.approx(0.9) and eta.loc["d", "eta_discharge"] == pytest.approx(0.9)
    assert eta.loc["n"].tolist() == [0.95, 0.95]  # never used: the BatteryConfig defaults


def test_stored_energy_is_valued_at_refill_cost_or_buy_back():
    value = stored_energy_value(np.array([-1.9, 2.0, 0.0]), 0.95, 0.9, 0.20, 0.04)
    assert value.tolist() == pytest.approx([-1.9 / 0.95 * 0.20, 2.0 * 0.9 * 0.04, 0.0])
    tariff = Scenario.model_fields["tariff"].default_factory()  # 0.12 / 0.18 / 0.30 / 0.15 from 0/7/17/21 h
    day = np.arange(288) * 300.0
    retail, export = stored_energy_prices(tariff, datetime(2024, 6, 21), day)
    assert retail == pytest.approx((7 * 0.12 + 10 * 0.18 + 4 * 0.30 + 3 * 0.15) / 24) and export == 0.04
    net = tariff.model_copy(update={"net_metering": True})
    assert stored_energy_prices(net, datetime(2024, 6, 21), day + 1e-9) == pytest.approx((retail, retail))
    assert stored_energy_prices(tariff, datetime(2024, 6, 21, 17), day[:12])[0] == pytest.approx(0.30)


def test_drawing_on_storage_costs_what_importing_would():
    # a imports its 2 kWh evening load; b serves it from its battery (which the run leaves 2 kWh emptier)
    steps = steps_frame({"a": {"pv_kw": 0.0, "load_kw": 2.0}, "b": {"pv_kw": 0.0, "load_kw": 2.0, "battery_kw": 2.0,
                                                                   "soc0_kwh": 5.0}})
    ledger = pd.DataFrame([{"time": 0, "participant": "a", "counterparty": "utility", "item": "utility_import",
                            "energy_kwh": 2.0, "amount": -2.0 * FLAT[0]}])
    per, k = figures(steps, ledger=ledger)
    assert per["cash_cost"].tolist() == pytest.approx([0.4, 0.0])
    assert per.loc["b", "stored_energy_change_kwh"] == pytest.approx(-2.0)
    assert per.loc["b", "stored_energy_value"] == pytest.approx(-0.4)
    assert per["total_cost"].tolist() == pytest.approx([0.4, 0.4]), "the battery is not free energy"
    assert per["total_cost"].sum() == pytest.approx(per["cash_cost"].sum() - per["stored_energy_value"].sum())


def test_a_battery_exporting_to_a_neighbour_passes_on_its_origin():
    # hour 1: a's PV charges a's battery (4 kWh); hour 2: a's battery exports 4 kWh that b's load uses; c
    # serves its own load from a battery filled from the grid before the run (never recharged: not local)
    steps = pd.concat([steps_frame({"a": {"pv_kw": 4.0, "load_kw": 0.0, "battery_kw": -4.0},
                                    "b": {"pv_kw": 0.0, "load_kw": 0.0},
                                    "c": {"pv_kw": 0.0, "load_kw": 1.0, "battery_kw": 1.0, "soc0_kwh": 5.0}}),
                       steps_frame({"a": {"pv_kw": 0.0, "load_kw": 0.0, "battery_kw": 4.0, "soc0_kwh": 4.0},
                                    "b": {"pv_kw": 0.0, "load_kw": 4.0},
                                    "c": {"pv_kw": 0.0, "load_kw": 1.0, "battery_kw": 1.0, "soc0_kwh": 4.0}})
                       .assign(time=lambda d: d["time"] + 3600)], ignore_index=True)
    per, k = figures(steps)
    assert k["self_sufficiency_pct"] == pytest.approx(100 * 4 / 6) and k["self_consumption_pct"] == pytest.approx(100)
    assert per.loc["b", "self_sufficiency_pct"] == 0.0 and per.loc["c", "self_sufficiency_pct"] == 0.0
    assert k["self_sufficiency_prosumer_pct"] == 0.0 and per.loc["a", "self_consumption_pct"] == 0.0


def test_efficiencies_come_from_the_prosumer_configs_else_from_the_soc_records(tmp_path):
    steps = steps_frame({"c": {"pv_kw": 5.0, "load_kw": 0.0, "battery_kw": -3.0, "soc0_kwh": 2.0, "eta": 0.8},
                         "d": {"pv_kw": 0.0, "load_kw": 1.2, "battery_kw": 1.2, "soc0_kwh": 6.0, "eta": 0.9},
                         "e": {"pv_kw": 1.0, "load_kw": 1.0}})
    (tmp_path / "federates").mkdir()
    for name, prosumers in (("prosumers_f_0", [{"name": "d", "battery": {"eta_charge": 0.5, "eta_discharge": 1}},
                                               {"name": "x", "battery": {"eta_charge": 0.1}}]),
                            ("prosumers_f_1", [{"name": "e", "battery": None},
                                               {"name": "d", "battery": {"eta_charge": 0.7}}])):
        (tmp_path / "federates" / f"{name}.json").write_text(json.dumps({"prosumers": prosumers}))
    eta = efficiencies(tmp_path, steps)
    assert eta.index.tolist() == ["c", "d", "e"] and eta.dtypes.tolist() == [np.float64, np.float64]
    assert eta.loc["d"].tolist() == [0.7, 0.95]  # the last config naming it; a missing field: the default
    assert eta.loc["e"].tolist() == [0.95, 0.95]  # no battery: the defaults
    assert eta.loc["c", "eta_charge"] == pytest.approx(0.8)  # in no config: from its SOC records
