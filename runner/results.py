"""End of a run: merge every federate's parts into ``RUN/results/<table>.csv``, build the ledger, check that
it balances, and write ``results/prosumer_kpis.csv`` and ``kpis.json``.

Energy KPIs are PHYSICAL: they are computed from the 5-min flows in ``prosumer_steps`` (sign convention of
``federates/common/messages.py``: ``grid_kw`` > 0 = export, ``battery_kw`` > 0 = discharging; production
``P = pv_kw - curtailed_kw``, demand ``D = load_kw + flex_kw``, battery charge ``C = max(-battery_kw, 0)``,
discharge ``B = max(battery_kw, 0)``), whatever was traded. Every step, the flows are allocated in merit order,
first behind each meter, then inside the boundary (one prosumer's meter, or one feeder's community):

1. behind the meter: own PV to own demand ``P->D = min(P, D)``, own battery to own demand
   ``B->D = min(B, D - P->D)``, own PV to own battery ``P->C = min(P - P->D, C)``; what is left is the meter's
   import, for demand ``D - P->D - B->D`` and for charging ``C - P->C``, and its export, of PV
   ``P - P->D - P->C`` and of battery energy ``B - B->D``;
2. inside the boundary: the members' exports meet the members' imports, PV before battery energy, demand
   before charging; the rest comes from (or goes to) outside. For one prosumer this step moves nothing; for a
   community, what it draws from outside is exactly ``max(0, -sum of the members' grid_kw)``.

Energy is tracked by origin: produced locally in the run, produced locally before it (stored at the start),
or from outside. Batteries are well mixed (a discharge draws every origin in proportion); what they charge
keeps the origin it came with (own or a member's PV: local; a member's battery export: its mix; outside: not
local). The energy in a battery at the start of the run was produced locally before it in the proportion
that battery's charging was local during the run (a periodic day: yesterday's charging looked like today's;
the fixed point of a few passes, :func:`periodic_local_consumption`), and is outside energy for a battery that
never charges (conservative). Then

    local supply   S = demand met by locally produced energy, of the run or stored before it   (kWh)
    PV used        U = the run's production that met local demand (<= production)             (kWh)
    self-sufficiency = S / demand,   self-consumption = U / production   (x 100, %)

- per prosumer (``prosumer_kpis.csv``: ``local_supply_kwh``, ``pv_used_kwh``, ``self_sufficiency_pct``,
  ``self_consumption_pct``; NaN without demand or PV): the boundary is its meter: only its own PV and battery
  are local;
- per community (``kpis.json``: ``self_sufficiency_pct_<feeder>``, ``self_consumption_pct_<feeder>``): the
  boundary is the feeder's community: a neighbour's export is local too, so a community figure is never
  below the behind-the-meter figure of its members together;
- ``self_sufficiency_pct`` / ``self_consumption_pct``: the community figures of all feeders, energy-weighted
  (sum of S or U over feeders / sum of demand or production); energy between feeders (Layer III) is not local;
- ``self_sufficiency_prosumer_pct`` / ``self_consumption_prosumer_pct``: behind the meter, energy-weighted
  over all prosumers (sum of their S or U / sum of their demand or production).

PV left in a battery at the end, battery losses and exports are production not used. Without batteries the
community self-sufficiency is ``1 - imports / demand`` exactly. ``p2p_share_of_demand_pct`` (Layer I
purchases / demand) is the old trade-based share, kept for reference.

STORED ENERGY (not a cash flow, so not in ``ledger.csv``; the ledger stays the source for money and its
balance checks stay exact). Each battery's energy at the start ``E0`` is reconstructed exactly from its first
record (``soc_kwh`` is recorded after the step: ``E0 = soc_kwh + 5 min x (B / eta_discharge - C x
eta_charge)``, efficiencies from the run's prosumer configs, or inferred from the recorded SOC changes when
the run folder has none), its energy at the end ``E1`` is the last
``soc_kwh``. The change ``dE = E1 - E0`` (``stored_energy_change_kwh``) is valued at the tariff in force
(``stored_energy_value``, $):

    dE < 0 (drained):  dE / eta_charge x mean retail price over the run   (what refilling it from the
                       utility costs: dE / eta_charge kWh through the meter)
    dE > 0 (surplus):  dE x eta_discharge x mean export credit over the run  (what selling it back earns:
                       the buy-back rate, or the retail rate under net metering)

(time-weighted means over the run's 5-min steps, :func:`runner.storage.stored_energy_prices`). Why: energy
drawn from storage displaced purchases during the run, and a battery left emptier must be refilled, through
the meter and its charging losses, before it can do so again; the mean retail price over the run is set by
the tariff alone (not by when a controller chose to charge) and is the same in every mode of a comparison on
the same span, so modes that drain storage differently meet on the same footing. A surplus is worth only what
it can be sold for: valuing it at retail would reward filling batteries at the end of a run. The asymmetry is
conservative: a run never gains from ending with a different state of charge more than it could cash in.
Per prosumer:

    cash_cost  = -(sum of its ledger amounts)                     (what it paid net of what it received)
    total_cost = cash_cost - stored_energy_value

so a run that drains the batteries pays for the energy it took, and runs or modes that leave different
amounts in storage compare on the same footing. ``kpis.json`` ``total_cost``, ``cash_cost``,
``stored_energy_change_kwh`` and ``stored_energy_value`` are the sums over prosumers. A VPP's community battery
(issue #15, ``results/community_battery.csv``) is one more storage unit, valued the same way
(:func:`runner.storage.community_batteries`); the value of its change is its members', shared like the VPP's
revenue (``community_battery_stored_value`` per prosumer, in ``total_cost``: ``total_cost = cash_cost -
stored_energy_value - community_battery_stored_value``); its energy is settled in cash in the ledger. The
energy shares below count prosumers' flows only (the community battery is not yet a member in
:func:`local_consumption`). The stored-energy functions live in
:mod:`runner.storage` (no dependency on the ledger, so the settlement can value storage the same way).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from federates.common.config import P2P_MODES, Scenario
from federates.common.tables import TABLES
from runner import ledger as led
from runner.storage import (
    batteries,
    community_battery_stored_value,
    efficiencies,
    stored_energy,
    stored_energy_prices,
)
from runner.table_io import holds, write_csv

log = logging.getLogger(__name__)

TICK_H = 300 / 3600


def collect(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Merge ``parts/*/<table>.csv`` into ``results/<table>.csv`` (sorted by time) and return the frames."""
    frames = merged_parts(run_dir)
    write_tables(run_dir, frames)
    return frames


def merged_parts(run_dir: Path, tables: tuple[str, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Every declared table (or those named): its parts (``parts/*/<table>.csv``) concatenated in the order of
    their folders' names, stably sorted by time; the declared columns without rows when no part has any."""
    frames = {}
    for table in TABLES if tables is None else tables:
        columns = TABLES[table]
        parts = [pd.read_csv(p) for p in sorted((Path(run_dir) / "parts").glob(f"*/{table}.csv"))]
        parts = [p for p in parts if len(p)]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))
        if len(df) and "time" in df:
            df = df.sort_values("time", kind="stable").reset_index(drop=True)
        frames[table] = df
    return frames


def write_tables(run_dir: Path, frames: dict[str, pd.DataFrame]) -> None:
    """Each frame as ``results/<table>.csv`` (:func:`runner.table_io.write_csv`: ``to_csv``'s bytes)."""
    out = Path(run_dir) / "results"
    out.mkdir(parents=True, exist_ok=True)
    for table, df in frames.items():
        write_csv(df, out / f"{table}.csv")


# ---- locally produced energy consumed --------------------------------------------------------------------------
def wide(steps: pd.DataFrame, column: str) -> pd.DataFrame:
    """``column`` of prosumer_steps as a (time x prosumer) table, prosumers sorted, missing values 0: the
    ``pivot`` of ``column`` (for a float column, its values placed directly, what ``pivot`` gives)."""
    values = steps[column]
    t_code, times = pd.factorize(steps["time"], sort=True)
    p_code, names = pd.factorize(steps["prosumer"], sort=True)
    cell = t_code * len(names) + p_code
    if values.dtype != np.float64 or not len(cell) or min(t_code.min(), p_code.min()) < 0 \
            or np.bincount(cell).max() > 1:  # not a float, a missing key or a duplicate: pivot says what it does
        return steps.pivot(index="time", columns="prosumer", values=column).sort_index().fillna(0.0)
    out = np.full((len(times), len(names)), np.nan)
    out[t_code, p_code] = values.to_numpy()
    return pd.DataFrame(out, index=pd.Index(times, name="time"), columns=pd.Index(names, name="prosumer")).fillna(0.0)


RUN, BEFORE, OUTSIDE = 0, 1, 2  # origins of energy: produced locally in the run, locally before it, outside
_PV, _GRID = np.eye(3)[RUN], np.eye(3)[OUTSIDE]


@dataclass(frozen=True)
class LocalFlows:
    """Result of :func:`local_consumption`, by origin (last axis: ``RUN``, ``BEFORE``, ``OUTSIDE``):
    ``consumed_kwh`` (boundaries x 3) the energy each boundary's demand used; per battery ``stored_kwh`` at the
    end and ``charged_kwh`` over the run (units x 3)."""

    consumed_kwh: np.ndarray
    stored_kwh: np.ndarray
    charged_kwh: np.ndarray

    @property
    def local_supply_kwh(self) -> np.ndarray:
        """Demand met by locally produced energy, in the run or stored before it (self-sufficiency)."""
        return self.consumed_kwh[:, RUN] + self.consumed_kwh[:, BEFORE]

    @property
    def pv_used_kwh(self) -> np.ndarray:
        """The run's local production that met local demand (self-consumption)."""
        return self.consumed_kwh[:, RUN]


def local_consumption(production_kw, demand_kw, battery_kw, group, start_kwh, eta_charge, eta_discharge,
                      start_local_share=0.0, dt_h: float = TICK_H) -> LocalFlows:
    """Energy consumed inside each boundary by origin (module docstring: merit order behind each meter, then
    between the members of a boundary; well-mixed batteries).

    ``production_kw``, ``demand_kw``, ``battery_kw``: (steps x units) arrays, battery + = discharging;
    ``group``: (units,) boundary index of each unit (0..G-1); ``start_kwh``, ``eta_*``, ``start_local_share``
    (the part of the start energy produced locally before the run): scalars or (units,).
    """
    group = np.asarray(group, dtype=int)
    n, n_groups = len(group), (int(group.max()) + 1 if group.size else 0)
    start, before = np.asarray(start_kwh, dtype=float) * np.ones(n), np.asarray(start_local_share) * np.ones(n)
    stored = np.column_stack([np.zeros(n), start * before, start * (1.0 - before)])
    eta_c, eta_d = np.asarray(eta_charge, dtype=float) * np.ones(n), np.asarray(eta_discharge) * np.ones(n)
    consumed, charged = np.zeros((n_groups, 3)), np.zeros((n, 3))
    alone = n_groups == n and bool(np.all(group == np.arange(n)))  # every unit its own boundary

    def per_group(x: np.ndarray) -> np.ndarray:
        if alone:  # what bincount adds up for a boundary of one: its own value, added to 0.0
            return x + 0.0
        return np.stack([np.bincount(group, weights=x[:, k], minlength=n_groups) for k in range(x.shape[1])], 1)

    def col(x: np.ndarray) -> np.ndarray:
        return x[:, None]

    for p_kw, d_kw, b_kw in zip(np.asarray(production_kw), np.asarray(demand_kw), np.asarray(battery_kw),
                                strict=True):
        charge, discharge = np.maximum(-b_kw, 0.0), np.maximum(b_kw, 0.0)
        share = _ratio(stored, stored.sum(axis=1, keepdims=True))  # origin mix of each battery
        # 1. behind each meter: own PV to own demand, own battery to own demand, own PV to own battery
        p_to_d = np.minimum(p_kw, d_kw)
        b_to_d = np.minimum(discharge, d_kw - p_to_d)
        p_to_c = np.minimum(p_kw - p_to_d, charge)
        need_d, need_c = d_kw - p_to_d - b_to_d, charge - p_to_c  # what the meter imports, for each use
        spare_p, spare_b = p_kw - p_to_d - p_to_c, discharge - b_to_d  # what the meter exports, by source
        # 2. inside the boundary: the members' exports meet the members' imports, PV first, demand first
        sp, nd, nc = (per_group(col(x))[:, 0] for x in (spare_p, need_d, need_c))
        sb_mix = per_group(col(spare_b) * share)  # the batteries' exports, by origin
        sb = sb_mix.sum(axis=1)
        mix_b = _ratio(sb_mix, col(sb))
        sp_to_d = np.minimum(sp, nd)
        sb_to_d = np.minimum(sb, nd - sp_to_d)
        sp_to_c = np.minimum(sp - sp_to_d, nc)
        sb_to_c = np.minimum(sb - sb_to_d, nc - sp_to_c)
        consumed += (per_group(col(p_to_d) * _PV + col(b_to_d) * share) + col(sp_to_d) * _PV
                     + col(sb_to_d) * mix_b) * dt_h
        to_c = col(sp_to_c) * _PV + col(sb_to_c) * mix_b + col(nc - sp_to_c - sb_to_c) * _GRID
        mix_c = _ratio(to_c, col(nc))[group]  # origin mix of what each meter imported to charge
        added = (col(p_to_c) * _PV + col(need_c) * mix_c) * col(eta_c) * dt_h
        charged += added
        stored = np.maximum(stored - col(discharge / eta_d * dt_h) * share + added, 0.0)
    return LocalFlows(consumed, stored, charged)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 1e-12)


def periodic_local_consumption(*args, dt_h: float = TICK_H, max_iter: int = 100, tol: float = 1e-9) -> LocalFlows:
    """:func:`local_consumption` with each battery's start energy given the origin mix of what it charged
    during the run (the fixed point: a periodic day's battery starts as it ends up charged); a battery that
    never charges keeps a start energy that is not local. ``args``: those of :func:`local_consumption` up to
    ``eta_discharge``."""
    share = 0.0
    for _ in range(max_iter):
        flows = local_consumption(*args, start_local_share=share, dt_h=dt_h)
        c = flows.charged_kwh
        new = _ratio(c[:, RUN] + c[:, BEFORE], c.sum(axis=1))
        if np.max(np.abs(new - share), initial=0.0) < tol:
            return flows
        share = new
    log.warning("start origin of stored energy did not converge in %d passes", max_iter)
    return flows


def locally_used(steps: pd.DataFrame, bat: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per prosumer (``by="prosumer"``: behind the meter) or per feeder (``by="feeder"``: inside the feeder's
    community): ``local_supply_kwh`` and ``pv_used_kwh`` (:class:`LocalFlows`)."""
    production = (wide(steps, "pv_kw") - wide(steps, "curtailed_kw")).clip(lower=0.0)
    demand = wide(steps, "load_kw") + wide(steps, "flex_kw")
    names = production.columns
    owner = steps.groupby("prosumer")[by].first().reindex(names)
    codes, labels = pd.factorize(owner, sort=True)
    b = bat.reindex(names)
    flows = periodic_local_consumption(production.to_numpy(), demand.to_numpy(), wide(steps, "battery_kw").to_numpy(),
                                       codes, b["battery_start_kwh"].to_numpy(), b["eta_charge"].to_numpy(),
                                       b["eta_discharge"].to_numpy())
    return pd.DataFrame({"local_supply_kwh": flows.local_supply_kwh, "pv_used_kwh": flows.pv_used_kwh},
                        index=pd.Index(labels, name=by))


def energy_figures(steps: pd.DataFrame, trades: pd.DataFrame, bat: pd.DataFrame) -> pd.DataFrame:
    """Per prosumer: production, demand, metered export and import, Layer I energy, locally produced energy
    consumed behind its meter and its self-sufficiency and self-consumption (%, NaN without demand or PV)."""
    g = steps.assign(pv=(steps["pv_kw"] - steps["curtailed_kw"]).clip(lower=0) * TICK_H,
                     demand=(steps["load_kw"] + steps["flex_kw"]) * TICK_H,
                     export=steps["grid_kw"].clip(lower=0) * TICK_H,
                     imports=(-steps["grid_kw"]).clip(lower=0) * TICK_H).groupby("prosumer")
    pv, demand = g["pv"].sum(), g["demand"].sum()
    l1 = trades[trades["layer"] == 1]
    used = locally_used(steps, bat, "prosumer").reindex(pv.index)
    return pd.DataFrame({"pv_kwh": pv, "demand_kwh": demand, "export_kwh": g["export"].sum(),
                         "import_kwh": g["imports"].sum(),
                         "p2p_bought_kwh": l1.groupby("buyer")["energy_kwh"].sum().reindex(pv.index).fillna(0.0),
                         "p2p_sold_kwh": l1.groupby("seller")["energy_kwh"].sum().reindex(pv.index).fillna(0.0),
                         "local_supply_kwh": used["local_supply_kwh"], "pv_used_kwh": used["pv_used_kwh"],
                         "self_sufficiency_pct": 100 * used["local_supply_kwh"] / demand.where(demand > 1e-9),
                         "self_consumption_pct": 100 * used["pv_used_kwh"] / pv.where(pv > 1e-9),
                         "unmet_flexible_kwh": g["unmet_flex_kwh"].sum()})


def community_figures(steps: pd.DataFrame, bat: pd.DataFrame) -> pd.DataFrame:
    """Per feeder: production, demand and locally produced energy consumed inside its community (kWh)."""
    pv = ((steps["pv_kw"] - steps["curtailed_kw"]).clip(lower=0) * TICK_H).groupby(steps["feeder"]).sum()
    demand = ((steps["load_kw"] + steps["flex_kw"]) * TICK_H).groupby(steps["feeder"]).sum()
    return pd.DataFrame({"pv_kwh": pv, "demand_kwh": demand}).join(locally_used(steps, bat, "feeder"))


def prosumer_kpis(ledger: pd.DataFrame, steps: pd.DataFrame, trades: pd.DataFrame, bat: pd.DataFrame,
                  prices: tuple[float, float], community: pd.Series | None = None) -> pd.DataFrame:
    """Per prosumer: ``cash_cost`` (what it paid net of everything it received, from the ledger), the
    stored-energy term, its share of the value of its VPP's community battery's stored energy change
    (``community_battery_stored_value``, :func:`runner.storage.community_battery_stored_value`; 0 without one),
    ``total_cost = cash_cost - stored_energy_value - community_battery_stored_value``, ledger amounts by item,
    energy figures (``bat``:
    :func:`batteries`; ``prices``: :func:`stored_energy_prices`)."""
    if steps.empty:
        return pd.DataFrame(columns=["prosumer", "feeder", "total_cost"])
    names = steps["prosumer"].unique()
    mine = ledger[ledger["participant"].isin(names)]
    by_item = mine.pivot_table(index="participant", columns="item", values="amount", aggfunc="sum",
                               fill_value=0.0)
    df = pd.DataFrame(index=pd.Index(sorted(names), name="prosumer"))
    df["feeder"] = steps.groupby("prosumer")["feeder"].first()
    df["cash_cost"] = -mine.groupby("participant")["amount"].sum().reindex(df.index).fillna(0.0)
    df = df.join(stored_energy(bat, prices))
    df["community_battery_stored_value"] = community.reindex(df.index).fillna(0.0) if community is not None else 0.0
    df.insert(1, "total_cost", df["cash_cost"] - df["stored_energy_value"] - df["community_battery_stored_value"])
    for item in by_item.columns:
        df[f"{item}_amount"] = by_item[item].reindex(df.index).fillna(0.0)
    return df.join(energy_figures(steps, trades, bat)).reset_index()


def _share(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 1e-9 else 0.0


def energy_kpis(per_prosumer: pd.DataFrame, community: pd.DataFrame, p2p_kwh: float) -> dict:
    """The physical shares of kpis.json (module docstring), community and behind the meter, per feeder."""
    pv, demand = float(community["pv_kwh"].sum()), float(community["demand_kwh"].sum())

    def total(df: pd.DataFrame, column: str) -> float:
        return float(df[column].sum()) if len(df) else 0.0

    out = {"self_sufficiency_pct": _share(total(community, "local_supply_kwh"), demand),
           "self_consumption_pct": _share(total(community, "pv_used_kwh"), pv),
           "self_sufficiency_prosumer_pct": _share(total(per_prosumer, "local_supply_kwh"), demand),
           "self_consumption_prosumer_pct": _share(total(per_prosumer, "pv_used_kwh"), pv),
           "p2p_share_of_demand_pct": _share(p2p_kwh, demand)}
    for feeder, row in community.iterrows():
        out[f"self_sufficiency_pct_{feeder}"] = _share(float(row["local_supply_kwh"]), float(row["demand_kwh"]))
        out[f"self_consumption_pct_{feeder}"] = _share(float(row["pv_used_kwh"]), float(row["pv_kwh"]))
    return out


def kpis(frames: dict[str, pd.DataFrame], ledger: pd.DataFrame, per_prosumer: pd.DataFrame,
         community: pd.DataFrame) -> dict:
    steps, feeder, trades, anc = frames["prosumer_steps"], frames["feeder_steps"], frames["trades"], \
        frames["ancillary"]
    items = ledger.groupby("item")["amount"].sum() if len(ledger) else pd.Series(dtype=float)
    anc_income = float(sum(v for k, v in items.items() if str(k).startswith("ancillary_")))
    p2p = float(trades.loc[trades["layer"] == 1, "energy_kwh"].sum()) if len(trades) else 0.0
    head = feeder.groupby("time")["p_head_kw"].sum() if len(feeder) else pd.Series(dtype=float)
    vpps = sorted({f"vpp_{f}" for f in steps["feeder"].unique()}) if len(steps) else []

    def total(column: str) -> float:
        return float(per_prosumer[column].sum()) if column in per_prosumer else 0.0

    out = {
        "total_cost": total("total_cost"),
        "cash_cost": total("cash_cost"),
        "stored_energy_change_kwh": total("stored_energy_change_kwh"),
        "stored_energy_value": total("stored_energy_value"),
        "community_battery_stored_value": total("community_battery_stored_value"),
        **community_battery_kpis(frames.get("community_battery")),
        "p2p_energy_kwh": p2p,
        "l3_energy_kwh": float(trades.loc[trades["layer"] == 3, "energy_kwh"].sum()) if len(trades) else 0.0,
        "ancillary_revenue": anc_income,
        "penalties": float(-items.get("penalty", 0.0)),
        # the same metered delivery settled without Layer III credits, minus what was charged (harmony compare
        # reports the two-run figure: penalties with Layer III switched off minus with it on)
        "penalties_avoided": float((anc["penalty_without_l3"] - anc["penalty"]).sum()) if len(anc) else 0.0,
        **energy_kpis(per_prosumer, community, p2p),
        "unmet_flexible_kwh": float(steps["unmet_flex_kwh"].sum()) if len(steps) else 0.0,
        "voltage_violation_minutes": float((feeder.groupby("time")["n_violations"].sum() > 0).sum() * 5)
        if len(feeder) else 0.0,
        "losses_kwh": float(feeder["losses_kw"].sum() * TICK_H) if len(feeder) else 0.0,
        "peak_import_kw": float(head.max()) if len(head) else 0.0,
        "v_max_pu": float(feeder["v_max_pu"].max()) if len(feeder) else float("nan"),
        "v_min_pu": float(feeder["v_min_pu"].min()) if len(feeder) else float("nan"),
        "nonconverged_steps": int((~feeder["converged"].astype(bool)).sum()) if len(feeder) else 0,
        "corrective_actions": int(len(frames["corrective"])),
        "hems_fallbacks": int(frames["federate_stats"]["fallbacks"].sum()) if len(frames["federate_stats"]) else 0,
        "energy_balance_residual_kwh": led.market_energy_residual(frames["bids"], trades),
        "feeder_balance_residual_kwh": led.feeder_energy_residual(feeder) if len(feeder) else 0.0,
        "money_balance_residual": led.money_residual(ledger) if len(ledger) else 0.0,
        "vpp_retained": led.vpp_balance_residual(ledger, vpps) if len(ledger) else 0.0,
    }
    return {k: (round(v, 9) if isinstance(v, float) else v) for k, v in out.items()}


def community_battery_kpis(cb: pd.DataFrame | None) -> dict:
    """``community_battery_cycled_kwh``: energy the community batteries charged plus discharged (kWh, at their
    terminals) over the run; ``community_battery_reserve_kwh``: reserve they held (kW x h, up + down)."""
    if cb is None or cb.empty:
        return {"community_battery_cycled_kwh": 0.0, "community_battery_reserve_kwh": 0.0}
    return {"community_battery_cycled_kwh": float(cb["p_kw"].abs().sum() * TICK_H),
            "community_battery_reserve_kwh": float((cb["reserve_up_kw"] + cb["reserve_down_kw"]).sum() * TICK_H)}


def finish_run(sc: Scenario, run_dir: Path, *, wall_s: float | None = None) -> dict:
    """Collect, settle, check and write the KPIs of a run folder.

    The merged tables are written (``results/<table>.csv``) by a second thread while this one settles the run and
    computes its KPIs; each file is written by one thread, so the same bytes as one after the other."""
    run_dir = Path(run_dir)
    (run_dir / "results").mkdir(parents=True, exist_ok=True)  # before either thread writes in it
    frames = merged_parts(run_dir, SETTLED_TABLES)
    with ThreadPoolExecutor(max_workers=1) as disk:  # on exit, waits for the tables even when settling failed
        merged = {t: df.copy(deep=False) for t, df in frames.items() if t != "ledger"}  # the ledger once settled
        others = disk.submit(_write_and_merge, run_dir, merged, tuple(t for t in TABLES if t not in frames))
        ledger, per_prosumer, figures = _settle(sc, run_dir, frames)
        frames.update(others.result())
    if wall_s is not None:
        figures["wall_s"] = round(wall_s, 2)
    feeder = frames["feeder_steps"]
    head_kwh = float(feeder["p_head_kw"].abs().sum() * TICK_H) if len(feeder) else 0.0
    # a run whose books do not balance fails before kpis.json is written: no figures claim a sound run
    led.check({"money_balance_residual": figures["money_balance_residual"],
               "energy_balance_residual_kwh": figures["energy_balance_residual_kwh"],
               "vpp_retained": figures["vpp_retained"]})
    # OpenDSS balances to its own solver tolerance: allow 0.1 % of the energy through the feeder heads
    led.check({"feeder_balance_residual_share": figures["feeder_balance_residual_kwh"] / max(head_kwh, 1.0)},
              tol=1e-3)
    write_parquet(run_dir, sc.start, sc.location.timezone,
                  frames={**frames, "ledger": ledger, "prosumer_kpis": per_prosumer}, workers=PARQUET_WORKERS)
    write_kpis(run_dir, figures)
    return figures


# the tables the settlement and the KPIs read; the others are merged and written beside it by the second thread
SETTLED_TABLES = ("prosumer_steps", "feeder_steps", "trades", "bids", "ancillary", "ledger", "community_battery",
                  "corrective", "federate_stats")


def _write_and_merge(run_dir: Path, frames: dict[str, pd.DataFrame], others: tuple[str, ...]
                     ) -> dict[str, pd.DataFrame]:
    """Write ``frames``, then merge and write the tables ``others``; return those."""
    write_tables(run_dir, frames)
    merged = merged_parts(run_dir, others)
    write_tables(run_dir, merged)
    return merged


PARQUET_WORKERS = 2  # threads converting the results tables to Parquet (Arrow writes them without the GIL)


def _settle(sc: Scenario, run_dir: Path, frames: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The ledger (written to ``results/ledger.csv``), the prosumers' KPIs (``results/prosumer_kpis.csv``) and
    the figures of kpis.json (without ``wall_s``) of a run's merged tables."""
    steps = frames["prosumer_steps"]
    members = {p: f"vpp_{f}" for p, f in steps.groupby("prosumer")["feeder"].first().items()} if len(steps) else {}
    with_vpp = sc.mode in P2P_MODES
    fees = {f"vpp_{f.name}": f.vpp.fee_fraction for f in sc.feeders} if with_vpp else {}
    tariff = sc.tariff_for_mode()
    try:
        eta = efficiencies(run_dir, steps) if len(steps) else None
        ledger = led.build_ledger(frames, tariff, sc.start, fees, members, eta=eta)
    except Exception:
        write_tables(run_dir, {"ledger": frames["ledger"]})  # the recorded entries, as collect leaves them
        raise
    write_csv(ledger, run_dir / "results" / "ledger.csv")
    bat = batteries(steps, eta) if len(steps) else pd.DataFrame()
    prices = stored_energy_prices(tariff, sc.start, steps["time"]) if len(steps) else (0.0, 0.0)
    community = community_battery_stored_value(frames["community_battery"], steps, members, prices) \
        if len(steps) else None
    per_prosumer = prosumer_kpis(ledger, steps, frames["trades"], bat, prices, community)
    write_csv(per_prosumer, run_dir / "results" / "prosumer_kpis.csv")
    community = community_figures(steps, bat) if len(steps) else \
        pd.DataFrame(columns=["pv_kwh", "demand_kwh", "local_supply_kwh", "pv_used_kwh"])
    figures = kpis(frames, ledger, per_prosumer, community)
    figures["mode"] = sc.mode
    for feeder in sc.feeders:  # which Layer I market each feeder ran ("none" in the modes without one)
        figures[f"mechanism_{feeder.name}"] = (feeder.market or sc.market).mechanism if with_vpp else "none"
    figures["prosumers"] = int(steps["prosumer"].nunique()) if len(steps) else 0
    return ledger, per_prosumer, figures


# columns whose type is not float: every other column of a results table is a number in its unit
_BOOL_COLUMNS = {"accepted", "converged"}
_INT_COLUMNS = {"layer", "slot", "steps", "fallbacks", "n_violations", "houses", "target", "bus", "iterations",
                "tap_step"}
_TEXT_COLUMNS = {"market", "participant", "side", "reason", "buyer", "seller", "vpp", "product", "feeder",
                 "message", "prosumer", "kind", "counterparty", "item", "federate", "action", "key", "load",
                 "payload", "mode", "mechanism", "case"}
# the same name with another type in one table: an OpenDSS bus is a name, a transmission case's bus a number
_TEXT_IN_TABLE = {"placement": {"bus"}}


_TEXT_DTYPE = pd.Series([], dtype=str).dtype  # what astype(str) gives


def typed_table(df: pd.DataFrame, table: str = "") -> pd.DataFrame:
    """Results table ``table`` read from CSV with its columns typed: booleans, integers, text, everything else
    float."""
    text = _TEXT_COLUMNS | _TEXT_IN_TABLE.get(table, set())
    for col in df.columns:
        if col in text and df[col].dtype == _TEXT_DTYPE:  # as below, without a detour through Python objects
            df[col] = df[col].fillna("")
        elif col in text:
            df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str)
        elif col in _BOOL_COLUMNS:
            df[col] = df[col].astype(str).str.lower().isin(("true", "1", "1.0"))
        elif col in _INT_COLUMNS and df[col].notna().all():
            df[col] = df[col].astype("int64")
        elif df[col].dtype == object or df[col].dtype == bool:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def write_parquet(run_dir: Path, start, timezone: str, frames: dict[str, pd.DataFrame] | None = None, *,
                  workers: int = 1) -> None:
    """Every ``results/<table>.csv`` also as ``results/<table>.parquet``: typed columns, ``time`` renamed
    ``time_s`` (seconds since the start) with a timezone-aware ``timestamp`` (the scenario's local zone) beside it.

    The table is what the CSV reads back as; ``frames`` (the tables as just written to CSV) saves reading it
    when that is the frame itself (:func:`reads_back_as_itself`). ``workers`` threads convert tables side by side,
    the largest first (each file written by one thread: the same bytes)."""
    origin = pd.Timestamp(start).tz_localize(timezone, ambiguous=False, nonexistent="shift_forward")
    frames = frames or {}

    def convert(csv: Path) -> None:
        df = frames.get(csv.stem)
        if df is not None and reads_back_as_itself(df):
            df = df.copy(deep=False)
        else:
            df = pd.read_csv(csv, keep_default_na=False, na_values=[""])
        df = typed_table(df, csv.stem)
        if "time" in df.columns:
            df = df.rename(columns={"time": "time_s"})
            at = df.columns.get_loc("time_s") + 1
            df.insert(at, "timestamp", origin + pd.to_timedelta(df["time_s"].astype(float), unit="s"))
        df.to_parquet(csv.with_suffix(".parquet"), index=False)

    tables = sorted((Path(run_dir) / "results").glob("*.csv"), key=lambda p: -p.stat().st_size)
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        for done in [pool.submit(convert, csv) for csv in tables]:
            done.result()


# what pandas' CSV reader could take for a number, a boolean or a missing value (a superset: anything else is text)
_NOT_TEXT = r"(?i)^\s*[+-]?(inf|infinity|nan|true|false|[0-9._e+\- ]*)\s*$"


def reads_back_as_itself(df: pd.DataFrame) -> bool:
    """Whether ``pd.read_csv(<df written by write_csv>, keep_default_na=False, na_values=[""])`` gives ``df``
    again, types and values: rows; unique names, none empty (the reader renames those) or with a carriage return
    (which the csv module does not quote); columns of int64, bool, float64 (its shortest repr reads back exactly)
    or text (``str``: with a value that cannot be read as anything else, no empty string (read back as missing),
    none with a carriage return). Otherwise the CSV is read back."""
    if not len(df) or not df.columns.is_unique or \
            not all(isinstance(c, str) and c and "\r" not in c for c in df.columns):
        return False
    return all(_column_reads_back(df[name]) for name in df.columns)


def _column_reads_back(col: pd.Series) -> bool:
    if not isinstance(col.dtype, pd.StringDtype):
        return col.dtype in (np.int64, np.float64, np.bool_)
    text = pa.array(col.array)
    if holds(text, b"\r") or pc.any(pc.equal(text, "")).as_py():
        return False
    values = text.drop_null()
    # one value the reader cannot take for a number or a boolean keeps the column text (the first ones first)
    return pc.all(pc.match_substring_regex(values[:100], _NOT_TEXT)).as_py() is False or \
        pc.all(pc.match_substring_regex(values, _NOT_TEXT)).as_py() is False


def write_kpis(run_dir: Path, figures: dict) -> Path:
    path = Path(run_dir) / "kpis.json"
    clean = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in figures.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    return path
