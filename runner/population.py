"""Seeded generation of a feeder's prosumers from its population settings."""

from __future__ import annotations

import numpy as np

from federates.common.config import EV_DEADLINE_H, EV_EARLIEST_H, EV_P_MAX_KW, FeederConfig
from federates.prosumer.devices import BatteryConfig, FlexLoadConfig, LoadConfig, ProsumerConfig, PvConfig


def make_prosumers(feeder: FeederConfig, loads: list[str], seed: int,
                   houses: dict[str, int] | None = None) -> list[ProsumerConfig]:
    """One prosumer per placed load, devices drawn from the population shares and ranges (seeded per feeder).

    A spot load that stands for ``houses[load]`` houses (a utility feeder's lumped load) becomes one prosumer
    with that many houses' consumption, PV and battery (flexible loads stay those of one house). A PV, battery
    or EV whose drawn size rounds to zero is left out (``pv_kwp: [0, 0]`` means no PV at all).
    """
    pop = feeder.prosumers
    rng = np.random.default_rng([seed, sum(map(ord, feeder.name))])
    houses = houses or {}
    out = []
    for i, load in enumerate(loads):
        n = houses.get(load, 1)
        kwp = round(n * rng.uniform(*pop.pv_kwp), 1) if rng.random() < pop.pv_share else 0.0
        pv = PvConfig(kwp=kwp) if kwp > 0 else None
        battery = None
        if rng.random() < pop.battery_share:
            kwh = round(n * rng.uniform(*pop.battery_kwh), 1)
            battery = BatteryConfig(capacity_kwh=kwh, p_max_kw=round(max(kwh / 2.0, 2.5), 1)) if kwh > 0 else None
        flex = []
        ev_kwh = round(rng.uniform(*pop.ev_kwh), 1) if rng.random() < pop.ev_share else 0.0
        if ev_kwh > 0:
            flex.append(FlexLoadConfig(name="ev", energy_kwh=ev_kwh, earliest_h=EV_EARLIEST_H,
                                       deadline_h=EV_DEADLINE_H, p_max_kw=EV_P_MAX_KW))
        if rng.random() < pop.dishwasher_share:
            flex.append(FlexLoadConfig(name="dishwasher", energy_kwh=1.2, earliest_h=9.0, deadline_h=21.0,
                                       p_max_kw=1.5))
        out.append(ProsumerConfig(name=f"{feeder.name}_p{i:03d}", load_name=load,
                                  load=LoadConfig(daily_kwh=round(n * rng.uniform(*pop.daily_kwh), 1)),
                                  pv=pv, battery=battery, flex_loads=flex))
    return out
