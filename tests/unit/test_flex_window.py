"""A flexible load never draws more than its power times the part of the interval inside its window, and a
corrective import cap defers it only down to its must-run, so it is complete when its window closes.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from federates.prosumer.devices import FlexLoadConfig, Location, ProsumerConfig, PvConfig, TariffConfig, TouPeriod
from federates.prosumer.fleet import ProsumerFleet, Setpoint

TARIFF = TariffConfig(retail_tou=[TouPeriod(start_h=0, price_per_kwh=0.2)], buyback_price_per_kwh=0.05)
LOC = Location(latitude_deg=47.37, longitude_deg=8.54, timezone="Europe/Zurich")
STEP_H = 300 / 3600
# opens 2.4 min into the 12:00 interval and closes 2.4 min into the 15:55 interval
DW = FlexLoadConfig(name="dw", energy_kwh=1.0, earliest_h=12.04, deadline_h=15.96, p_max_kw=2.0)
EV = FlexLoadConfig(name="ev", energy_kwh=10.0, earliest_h=12.0, deadline_h=14.0, p_max_kw=7.0)


def _run(prosumer: ProsumerConfig, setpoint: Setpoint, start_h: int, hours: int) -> list:
    n = hours * 12
    fleet = ProsumerFleet([prosumer], TARIFF, LOC, datetime(2024, 6, 21, start_h), n_steps=n, horizon_slots=4,
                          seed=3)
    fleet.plan(0.0, 0)
    out = []
    for step in range(n):
        if step % 6 == 0:
            fleet.plan(step * 300.0, step // 6 + 1)
        out.append(fleet.dispatch(step * 300.0, {prosumer.name: setpoint})[0])
    return out


def _overlap_h(a_h: float, b_h: float, cfg: FlexLoadConfig) -> float:
    return max(0.0, min(b_h, cfg.deadline_h) - max(a_h, cfg.earliest_h))


def test_a_partly_covered_interval_gets_only_its_share_of_power():
    # an export cap of 0 kW under strong PV pulls the load forward as far as it may go, every interval
    records = _run(ProsumerConfig(name="p", pv=PvConfig(kwp=12.0, cloudiness=0.0), flex_loads=[DW]),
                   Setpoint(max_export_kw=0.0), start_h=11, hours=6)
    hours = 11 + STEP_H * np.arange(len(records))
    flex = np.array([r.flex_kw for r in records])
    allowed = np.array([DW.p_max_kw * _overlap_h(h, h + STEP_H, DW) / STEP_H for h in hours])
    assert np.all(flex <= allowed + 1e-9), "a load ran faster than its window allows"
    first = int(np.argmax(allowed > 0))
    assert 0 < allowed[first] < DW.p_max_kw and flex[first] == pytest.approx(allowed[first], abs=1e-9), \
        "the cap must pull the load forward into the first, partly covered interval"
    assert flex.sum() * STEP_H == pytest.approx(DW.energy_kwh, abs=1e-7)


def test_an_import_cap_over_the_window_close_keeps_the_must_run():
    records = _run(ProsumerConfig(name="e", flex_loads=[EV]), Setpoint(max_import_kw=0.0), start_h=11, hours=4)
    flex = np.array([r.flex_kw for r in records])
    unmet = sum(r.unmet_flex_kwh for r in records)
    assert unmet == 0.0, "the cap may defer the load but not past its must-run"
    assert flex.sum() * STEP_H == pytest.approx(EV.energy_kwh, abs=1e-7)
    # deferred as long as possible: nothing in the first 34 minutes, then full power to the deadline
    hours = 11 + STEP_H * np.arange(len(records))
    window = (hours >= EV.earliest_h) & (hours < EV.deadline_h)
    assert flex[window][0] == 0.0 and flex[window][-1] == pytest.approx(EV.p_max_kw)
