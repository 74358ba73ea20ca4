"""Energy stored in batteries at the start and end of a run, and its value (see :mod:`runner.results`).

Not a cash flow: never written to the ledger. Each battery's energy at the start ``E0`` is reconstructed exactly
from its first ``prosumer_steps`` record (``soc_kwh`` is recorded after the step, sign convention of
``federates/common/messages.py``: ``battery_kw`` > 0 = discharging):
``E0 = soc_kwh + 5 min x (discharge / eta_discharge - charge x eta_charge)``; its energy at the end ``E1`` is
the last ``soc_kwh``. The change ``dE = E1 - E0`` is valued at the tariff in force:

    dE < 0:  dE / eta_charge x mean retail price over the run      (refilling it through the meter)
    dE > 0:  dE x eta_discharge x mean export credit over the run  (selling it back)

Pure functions of recorded tables and the tariff; a community battery (issue #15) is one more row of
:func:`batteries` with its owner as the index.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from federates.common.timebase import local_hour
from federates.prosumer.devices import BatteryConfig, TariffConfig

log = logging.getLogger(__name__)

TICK_S = 300
TICK_H = TICK_S / 3600
ETA_DEFAULT = (BatteryConfig.model_fields["eta_charge"].default, BatteryConfig.model_fields["eta_discharge"].default)


def efficiencies(run_dir: Path, steps: pd.DataFrame) -> pd.DataFrame:
    """Per prosumer of ``steps``: ``eta_charge``, ``eta_discharge`` from the run's prosumer federate configs
    (``run_dir/federates/prosumers_*.json``); for a prosumer not found there (a plain ``helics run`` keeps its
    configs elsewhere), inferred from its own recorded SOC changes, else the BatteryConfig defaults."""
    names = sorted(steps["prosumer"].unique()) if len(steps) else []
    out = pd.DataFrame(index=pd.Index(names, name="prosumer"), columns=["eta_charge", "eta_discharge"], dtype=float)
    found = {}  # prosumer -> its efficiencies (the last config naming it)
    for path in sorted((Path(run_dir) / "federates").glob("prosumers_*.json")):
        for p in json.loads(path.read_text()).get("prosumers", []):
            b = p.get("battery") or {}
            found[p["name"]] = (b.get("eta_charge", ETA_DEFAULT[0]), b.get("eta_discharge", ETA_DEFAULT[1]))
    found = {name: eta for name, eta in found.items() if name in out.index}
    if found:
        out.iloc[out.index.get_indexer(list(found))] = np.array(list(found.values()), dtype=float)
    missing = out.index[out["eta_charge"].isna()]
    if len(missing):
        log.info("battery efficiencies of %d prosumers inferred from their SOC records", len(missing))
        out.loc[missing] = inferred_efficiencies(steps[steps["prosumer"].isin(missing)]).reindex(missing)
    return out


def inferred_efficiencies(steps: pd.DataFrame) -> pd.DataFrame:
    """``eta_charge = dSOC / (charge x 5 min)``, ``eta_discharge = discharge x 5 min / -dSOC`` over the recorded
    steps (median per prosumer); the BatteryConfig defaults where a prosumer never charged or discharged."""
    s = steps.sort_values(["prosumer", "time"])
    d_soc = s.groupby("prosumer")["soc_kwh"].diff()
    b = s["battery_kw"]
    ch, dis = (b < -1e-6) & d_soc.notna(), (b > 1e-6) & d_soc.notna()
    eta_c = (d_soc[ch] / (-b[ch] * TICK_H)).groupby(s.loc[ch, "prosumer"]).median()
    eta_d = (b[dis] * TICK_H / -d_soc[dis]).groupby(s.loc[dis, "prosumer"]).median()
    names = pd.Index(sorted(s["prosumer"].unique()), name="prosumer")
    return pd.DataFrame({"eta_charge": eta_c.reindex(names).fillna(ETA_DEFAULT[0]),
                         "eta_discharge": eta_d.reindex(names).fillna(ETA_DEFAULT[1])})


def batteries(steps: pd.DataFrame, eta: pd.DataFrame) -> pd.DataFrame:
    """Per prosumer: its efficiencies, the energy in its battery before the first step (``battery_start_kwh``,
    from the first record: soc_kwh is recorded after the step) and after the last (``battery_end_kwh``)."""
    s = in_time_order(steps[["time", "prosumer", "battery_kw", "soc_kwh"]]).groupby("prosumer")
    first, last = s.first(), s.last()
    eta = eta.reindex(first.index)
    b = first["battery_kw"]
    drawn = TICK_H * np.where(b > 0, b / eta["eta_discharge"], b * eta["eta_charge"])  # kWh out of storage
    return pd.DataFrame({"eta_charge": eta["eta_charge"], "eta_discharge": eta["eta_discharge"],
                         "battery_start_kwh": first["soc_kwh"] + drawn, "battery_end_kwh": last["soc_kwh"]})


def in_time_order(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` stably sorted by ``time`` (as it is when already in that order, as merged tables are)."""
    return table if table["time"].is_monotonic_increasing else table.sort_values("time", kind="stable")


def stored_energy_prices(tariff: TariffConfig, start: datetime, times_s) -> tuple[float, float]:
    """(mean retail price, mean export credit) in $/kWh over the run's 5-min steps (``times_s``: their start
    times, s after ``start``), the prices at which a change of stored energy is valued."""
    t = np.unique(np.floor(np.asarray(times_s, dtype=float) / TICK_S + 1e-6) * TICK_S)
    if not len(t):
        return 0.0, 0.0
    hour = local_hour(start, t)
    return float(tariff.retail_array(hour).mean()), float(tariff.export_price_array(hour).mean())


def stored_energy_value(change_kwh, eta_charge, eta_discharge, retail_per_kwh: float, export_per_kwh: float):
    """$ value of a change of stored energy (+ = worth more at the end): a deficit costs what refilling it
    through the meter costs (``change / eta_charge x retail``), a surplus earns what selling it back earns
    (``change x eta_discharge x export credit``)."""
    change = np.asarray(change_kwh, dtype=float)
    return np.where(change < 0, change / np.asarray(eta_charge, dtype=float) * retail_per_kwh,
                    change * np.asarray(eta_discharge, dtype=float) * export_per_kwh)


def stored_energy(bat: pd.DataFrame, prices: tuple[float, float]) -> pd.DataFrame:
    """Per storage unit (rows of :func:`batteries`): start and end energy, change (kWh) and its value ($)."""
    change = bat["battery_end_kwh"] - bat["battery_start_kwh"]
    value = stored_energy_value(change, bat["eta_charge"], bat["eta_discharge"], *prices)
    return pd.DataFrame({"battery_start_kwh": bat["battery_start_kwh"], "battery_end_kwh": bat["battery_end_kwh"],
                         "stored_energy_change_kwh": change, "stored_energy_value": value}, index=bat.index)


def reserve_held_kwh(steps: pd.DataFrame) -> pd.Series:
    """Per prosumer: the reserve capacity it held over the run (kW x h, up + down): the weights of the VPP's
    revenue sharing (:func:`runner.ledger.revenue_share_entries`) and of its community battery's stored energy."""
    if steps.empty:
        return pd.Series(dtype=float)
    return ((steps["reserve_up_kw"] + steps["reserve_down_kw"]) * TICK_H).groupby(steps["prosumer"]).sum()


def community_batteries(cb: pd.DataFrame) -> pd.DataFrame:
    """Per VPP (rows of the ``community_battery`` table, ``p_kw`` > 0 = discharging, ``soc_kwh`` after the
    interval): its efficiencies and its energy before the first and after the last interval, as
    :func:`batteries` gives them for the prosumers' batteries."""
    if cb is None or cb.empty:
        return pd.DataFrame(columns=["eta_charge", "eta_discharge", "battery_start_kwh", "battery_end_kwh"])
    s = cb.sort_values("time", kind="stable").groupby("vpp")
    first, last = s.first(), s.last()
    b = first["p_kw"]
    drawn = TICK_H * np.where(b > 0, b / first["eta_discharge"], b * first["eta_charge"])
    return pd.DataFrame({"eta_charge": first["eta_charge"], "eta_discharge": first["eta_discharge"],
                         "battery_start_kwh": first["soc_kwh"] + drawn, "battery_end_kwh": last["soc_kwh"]})


def community_battery_stored_value(cb: pd.DataFrame, steps: pd.DataFrame, members: dict[str, str],
                                   prices: tuple[float, float]) -> pd.Series:
    """Per prosumer ($): its share of the value of the change of its VPP's community battery's stored energy
    (valued as :func:`stored_energy`), shared like the VPP's revenue: pro rata to the reserve each member held,
    equally when nobody held any (the non-profit VPP keeps nothing). 0 for members of VPPs without one."""
    from federates.vpp.aggregation import share_revenue

    names = pd.Index(sorted(members), name="prosumer")
    out = pd.Series(0.0, index=names)
    units = community_batteries(cb)
    if units.empty:
        return out
    value = stored_energy(units, prices)["stored_energy_value"]
    held = reserve_held_kwh(steps)
    for vpp, v in value.items():
        mine = [p for p in names if members[p] == vpp]
        if mine and v:
            for member, share in share_revenue(float(v), held.reindex(mine).fillna(0.0).to_dict(),
                                               fee_fraction=0.0).items():
                out[member] += share
    return out
