"""Real-time dispatch keeps the battery inside [reserve floor, soc_max] even when the VPP asks for more.

The day in test_fleet.py never reaches the ceiling, so a charge limit that ignored ``soc_max_frac`` (charging
up to the full capacity) passed it. Here the VPP asks for far more charge (then discharge) than the battery can
take for hours, so the SOC must reach each limit and stop exactly there.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from federates.prosumer.devices import BatteryConfig, Location, ProsumerConfig, TariffConfig, TouPeriod
from federates.prosumer.fleet import ProsumerFleet, Setpoint

TARIFF = TariffConfig(retail_tou=[TouPeriod(start_h=0, price_per_kwh=0.2)], buyback_price_per_kwh=0.05)
LOC = Location(latitude_deg=47.37, longitude_deg=8.54, timezone="Europe/Zurich")
BATTERY = BatteryConfig(capacity_kwh=10.0, p_max_kw=4.0, soc_min_frac=0.1, soc_max_frac=0.95, soc_init_frac=0.5,
                        reserve_frac=0.3)
STEPS = 36  # three hours of 5 minutes: enough to fill, then to empty


def _drive(delta_p_kw: float) -> tuple[np.ndarray, np.ndarray, list]:
    fleet = ProsumerFleet([ProsumerConfig(name="b", battery=BATTERY)], TARIFF, LOC, datetime(2024, 1, 10),
                          n_steps=STEPS, horizon_slots=2, seed=1)
    fleet.plan(0.0, 0)
    soc, bat, room = [], [], []
    for step in range(STEPS):
        if step % 6 == 0:
            fleet.plan(step * 300.0, step // 6 + 1)
        (r,) = fleet.dispatch(step * 300.0, {"b": Setpoint(delta_p_kw=delta_p_kw)})
        soc.append(r.soc_kwh)
        bat.append(r.battery_kw)
        room.append(fleet.headroom_kw({"b": r.battery_kw})["b"])
    return np.array(soc), np.array(bat), room


def test_charging_stops_exactly_at_soc_max():
    soc, bat, room = _drive(-50.0)
    ceiling = BATTERY.soc_max_frac * BATTERY.capacity_kwh
    assert soc.max() == pytest.approx(ceiling, abs=1e-9), "the VPP's request must fill the battery to soc_max"
    assert np.all(soc <= ceiling + 1e-9)
    assert np.all(-bat <= BATTERY.p_max_kw + 1e-9)
    assert bat[-1] == pytest.approx(0.0, abs=1e-9), "full: no more charging"
    assert room[-1][1] == pytest.approx(0.0, abs=1e-9), "full: the meter reports no down headroom"


def test_discharging_stops_exactly_at_the_reserve_floor():
    soc, bat, room = _drive(+50.0)
    floor = BATTERY.reserve_frac * BATTERY.capacity_kwh
    assert soc.min() == pytest.approx(floor, abs=1e-9), "normal dispatch empties the battery to its reserve"
    assert np.all(soc >= floor - 1e-9)
    assert np.all(bat <= BATTERY.p_max_kw + 1e-9)
    assert room[-1][0] == pytest.approx(0.0, abs=1e-9), "at the floor: no up headroom"


def test_meter_headroom_counts_from_the_battery_output_of_the_interval():
    fleet = ProsumerFleet([ProsumerConfig(name="b", battery=BATTERY)], TARIFF, LOC, datetime(2024, 1, 10),
                          n_steps=STEPS, horizon_slots=2, seed=1)
    fleet.plan(0.0, 0)
    fleet.dispatch(0.0, {})
    up0, down0 = fleet.headroom_kw({"b": 0.0})["b"]
    assert 0 < up0 <= BATTERY.p_max_kw and 0 < down0 <= BATTERY.p_max_kw
    # charging at 1.5 kW: it can add 1.5 kW more up (stop charging) and 1.5 kW less down
    up, down = fleet.headroom_kw({"b": -1.5})["b"]
    assert (up, down) == (pytest.approx(up0 + 1.5), pytest.approx(down0 - 1.5))
    up, down = fleet.headroom_kw({"b": up0 + 1.0})["b"]  # already discharging beyond its limit
    assert up == 0.0 and down == pytest.approx(down0 + up0 + 1.0)
