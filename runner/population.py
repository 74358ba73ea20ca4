"""Seeded generation of a feeder's prosumers from its population settings."""

from __future__ import annotations

from fnmatch import fnmatchcase

import numpy as np

from federates.common.config import EV_DEADLINE_H, EV_EARLIEST_H, EV_P_MAX_KW, FeederConfig, ProfileConfig
from federates.common.errors import ConfigError
from federates.prosumer.devices import (
    BatteryConfig,
    FlexLoadConfig,
    LoadConfig,
    ProsumerConfig,
    PvConfig,
    read_profile_table,
)


def make_prosumers(feeder: FeederConfig, loads: list[str], seed: int,
                   houses: dict[str, int] | None = None) -> list[ProsumerConfig]:
    """One prosumer per placed load, devices drawn from the population shares and ranges (seeded per feeder).

    A spot load that stands for ``houses[load]`` houses (a utility feeder's lumped load) becomes one prosumer
    with that many houses' consumption, PV and battery (flexible loads stay those of one house). A PV, battery
    or EV whose drawn size rounds to zero is left out (``pv_kwp: [0, 0]`` means no PV at all).
    The population's ``profiles`` then replace the matched prosumers' load, PV and EV (:func:`with_profiles`),
    after every draw, so the prosumers they do not match are the same with or without them.
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
    return [with_profiles(p, pop.profiles) for p in out]


def matched_profiles(name: str, profiles: list[ProfileConfig]) -> list[ProfileConfig]:
    """The profile entries whose (case-sensitive) shell pattern matches prosumer ``name``, in order."""
    return [entry for entry in profiles if fnmatchcase(name, entry.match)]


def with_profiles(prosumer: ProsumerConfig, profiles: list[ProfileConfig]) -> ProsumerConfig:
    """``prosumer`` with the files of the entries that match it (a later entry's file wins): ``load`` replaces the
    generated load, ``pv`` the generated PV (a prosumer drawn without PV gets one, sized at the file's peak),
    ``ev`` replaces the drawn shiftable EV by its charging as given, added to the load."""
    load, pv, ev = None, None, None
    for entry in matched_profiles(prosumer.name, profiles):
        load, pv, ev = entry.load or load, entry.pv or pv, entry.ev or ev
    if load is None and pv is None and ev is None:
        return prosumer
    update: dict = {"load": prosumer.load.model_copy(update={"csv": load or prosumer.load.csv,
                                                             "ev_csv": ev or prosumer.load.ev_csv})}
    if ev is not None:
        update["flex_loads"] = [f for f in prosumer.flex_loads if f.name != "ev"]
    if pv is not None:
        kwp = prosumer.pv.kwp if prosumer.pv is not None else _peak_kw(pv)
        update["pv"] = PvConfig(kwp=kwp, csv=pv) if kwp > 0 else None
    return prosumer.model_copy(update=update)


def _peak_kw(path) -> float:
    """Nameplate of a PV given only by its file: its highest p_kw (0 when unreadable; `validate` names the file)."""
    try:
        peak = float(read_profile_table(path)["p_kw"].max())
    except (ConfigError, TypeError, ValueError):
        return 0.0
    return round(peak, 3) if peak > 0 else 0.0
