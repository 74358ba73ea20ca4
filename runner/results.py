"""End of a run: merge every federate's parts into ``RUN/results/<table>.csv``, build the ledger, check that
it balances, and write ``results/prosumer_kpis.csv`` and ``kpis.json``.

KPI definitions (the field's usage): self-sufficiency = self-consumed energy / demand = 1 - (utility imports -
P2P purchases) / demand; self-consumption = self-consumed energy / production = 1 - (utility exports - P2P
sales) / PV production. Energy bought from peers on the same feeder counts as self-consumed. Both are clipped
at 0 (battery arbitrage under net metering can import or export more than the demand or the production).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from federates.common.config import P2P_MODES, Scenario
from federates.common.tables import TABLES
from runner import ledger as led

TICK_H = 300 / 3600


def collect(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Merge ``parts/*/<table>.csv`` into ``results/<table>.csv`` (sorted by time) and return the frames."""
    run_dir = Path(run_dir)
    out = run_dir / "results"
    out.mkdir(parents=True, exist_ok=True)
    frames = {}
    for table, columns in TABLES.items():
        parts = [pd.read_csv(p) for p in sorted((run_dir / "parts").glob(f"*/{table}.csv"))]
        parts = [p for p in parts if len(p)]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))
        if len(df) and "time" in df:
            df = df.sort_values("time", kind="stable").reset_index(drop=True)
        df.to_csv(out / f"{table}.csv", index=False)
        frames[table] = df
    return frames


def prosumer_kpis(ledger: pd.DataFrame, steps: pd.DataFrame, trades: pd.DataFrame) -> pd.DataFrame:
    """Per prosumer: cost (what it paid net of everything it received), energy figures."""
    if steps.empty:
        return pd.DataFrame(columns=["prosumer", "feeder", "total_cost"])
    names = steps["prosumer"].unique()
    mine = ledger[ledger["participant"].isin(names)]
    by_item = mine.pivot_table(index="participant", columns="item", values="amount", aggfunc="sum",
                               fill_value=0.0)
    df = pd.DataFrame(index=pd.Index(sorted(names), name="prosumer"))
    df["feeder"] = steps.groupby("prosumer")["feeder"].first()
    df["total_cost"] = -mine.groupby("participant")["amount"].sum().reindex(df.index).fillna(0.0)
    for item in by_item.columns:
        df[f"{item}_amount"] = by_item[item].reindex(df.index).fillna(0.0)
    e = energy_figures(steps, trades)
    return df.join(e).reset_index()


def energy_figures(steps: pd.DataFrame, trades: pd.DataFrame) -> pd.DataFrame:
    g = steps.groupby("prosumer")
    pv = g.apply(lambda d: ((d["pv_kw"] - d["curtailed_kw"]).clip(lower=0) * TICK_H).sum(), include_groups=False)
    demand = g.apply(lambda d: ((d["load_kw"] + d["flex_kw"]) * TICK_H).sum(), include_groups=False)
    export = g.apply(lambda d: (d["grid_kw"].clip(lower=0) * TICK_H).sum(), include_groups=False)
    imports = g.apply(lambda d: ((-d["grid_kw"]).clip(lower=0) * TICK_H).sum(), include_groups=False)
    l1 = trades[trades["layer"] == 1]
    bought = l1.groupby("buyer")["energy_kwh"].sum().reindex(pv.index).fillna(0.0)
    sold = l1.groupby("seller")["energy_kwh"].sum().reindex(pv.index).fillna(0.0)
    return pd.DataFrame({"pv_kwh": pv, "demand_kwh": demand, "export_kwh": export, "import_kwh": imports,
                         "p2p_bought_kwh": bought, "p2p_sold_kwh": sold,
                         "unmet_flexible_kwh": g["unmet_flex_kwh"].sum()})


def kpis(frames: dict[str, pd.DataFrame], ledger: pd.DataFrame, per_prosumer: pd.DataFrame) -> dict:
    steps, feeder, trades, anc = frames["prosumer_steps"], frames["feeder_steps"], frames["trades"], \
        frames["ancillary"]
    items = ledger.groupby("item")["amount"].sum() if len(ledger) else pd.Series(dtype=float)
    anc_income = float(sum(v for k, v in items.items() if str(k).startswith("ancillary_")))
    pv, demand = per_prosumer["pv_kwh"].sum(), per_prosumer["demand_kwh"].sum()
    p2p = float(trades.loc[trades["layer"] == 1, "energy_kwh"].sum()) if len(trades) else 0.0
    # self-consumed = demand not met by the utility (P2P purchases count as local), production not exported
    # to the utility (P2P sales count as local); clipped at 0 when batteries charged from the grid export more
    from_utility = max(float(per_prosumer["import_kwh"].sum()) - p2p, 0.0)
    to_utility = max(float(per_prosumer["export_kwh"].sum()) - p2p, 0.0)
    head = feeder.groupby("time")["p_head_kw"].sum() if len(feeder) else pd.Series(dtype=float)
    vpps = sorted({f"vpp_{f}" for f in steps["feeder"].unique()}) if len(steps) else []
    out = {
        "total_cost": float(per_prosumer["total_cost"].sum()),
        "p2p_energy_kwh": p2p,
        "l3_energy_kwh": float(trades.loc[trades["layer"] == 3, "energy_kwh"].sum()) if len(trades) else 0.0,
        "ancillary_revenue": anc_income,
        "penalties": float(-items.get("penalty", 0.0)),
        # the same metered delivery settled without Layer III credits, minus what was charged (harmony compare
        # reports the two-run figure: penalties with Layer III switched off minus with it on)
        "penalties_avoided": float((anc["penalty_without_l3"] - anc["penalty"]).sum()) if len(anc) else 0.0,
        "self_sufficiency_pct": max(100 * (1 - from_utility / demand), 0.0) if demand else 0.0,
        "self_consumption_pct": max(100 * (1 - to_utility / pv), 0.0) if pv else 0.0,
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


def finish_run(sc: Scenario, run_dir: Path, *, wall_s: float | None = None) -> dict:
    """Collect, settle, check and write the KPIs of a run folder."""
    run_dir = Path(run_dir)
    frames = collect(run_dir)
    steps = frames["prosumer_steps"]
    members = {p: f"vpp_{f}" for p, f in steps.groupby("prosumer")["feeder"].first().items()} if len(steps) else {}
    with_vpp = sc.mode in P2P_MODES
    fees = {f"vpp_{f.name}": f.vpp.fee_fraction for f in sc.feeders} if with_vpp else {}
    ledger = led.build_ledger(frames, sc.tariff_for_mode(), sc.start, fees, members)
    ledger.to_csv(run_dir / "results" / "ledger.csv", index=False)
    per_prosumer = prosumer_kpis(ledger, steps, frames["trades"])
    per_prosumer.to_csv(run_dir / "results" / "prosumer_kpis.csv", index=False)
    figures = kpis(frames, ledger, per_prosumer)
    figures["mode"] = sc.mode
    figures["prosumers"] = int(steps["prosumer"].nunique()) if len(steps) else 0
    if wall_s is not None:
        figures["wall_s"] = round(wall_s, 2)
    write_kpis(run_dir, figures)
    head_kwh = float(frames["feeder_steps"]["p_head_kw"].abs().sum() * TICK_H) if len(frames["feeder_steps"]) else 0.0
    led.check({"money_balance_residual": figures["money_balance_residual"],
               "energy_balance_residual_kwh": figures["energy_balance_residual_kwh"],
               "vpp_retained": figures["vpp_retained"]})
    # OpenDSS balances to its own solver tolerance: allow 0.1 % of the energy through the feeder heads
    led.check({"feeder_balance_residual_share": figures["feeder_balance_residual_kwh"] / max(head_kwh, 1.0)},
              tol=1e-3)
    return figures


def write_kpis(run_dir: Path, figures: dict) -> Path:
    path = Path(run_dir) / "kpis.json"
    clean = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in figures.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    return path
