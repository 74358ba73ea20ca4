"""Collect every federate's recorded parts into ``RUN/results/<table>.csv`` and compute ``kpis.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from federates.common.tables import TABLES

TICK_H = 300 / 3600


def collect(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Merge ``parts/*/<table>.csv`` into ``results/<table>.csv`` (sorted by time) and return the frames."""
    run_dir = Path(run_dir)
    out = run_dir / "results"
    out.mkdir(parents=True, exist_ok=True)
    frames = {}
    for table, columns in TABLES.items():
        parts = sorted((run_dir / "parts").glob(f"*/{table}.csv"))
        df = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True) if parts else pd.DataFrame(
            columns=list(columns))
        if len(df):
            df = df.sort_values("time", kind="stable").reset_index(drop=True)
        df.to_csv(out / f"{table}.csv", index=False)
        frames[table] = df
    return frames


def read_results(run_dir: Path) -> dict[str, pd.DataFrame]:
    return {t: pd.read_csv(Path(run_dir) / "results" / f"{t}.csv") for t in TABLES}


def prosumer_costs(frames: dict[str, pd.DataFrame], tariff, start) -> pd.DataFrame:
    """Each prosumer's bill: utility energy per 30-minute slot (net of P2P positions) plus P2P payments.

    Per Layer I slot: utility_net_kwh = metered net export + P2P bought - P2P sold; a positive value is
    credited at the buy-back rate, a negative one charged at the retail rate of that slot.
    """
    steps = frames["prosumer_steps"]
    if steps.empty:
        return pd.DataFrame(columns=["prosumer", "utility_cost", "p2p_cost", "total_cost"])
    steps = steps.assign(slot=(steps["time"] // 1800).astype(int), e_kwh=steps["grid_kw"] * TICK_H)
    metered = steps.groupby(["prosumer", "slot"])["e_kwh"].sum()
    trades = frames["trades"]
    l1 = trades[trades["layer"] == 1] if not trades.empty else trades
    bought = l1.groupby(["buyer", "slot"])["energy_kwh"].sum() if len(l1) else pd.Series(dtype=float)
    sold = l1.groupby(["seller", "slot"])["energy_kwh"].sum() if len(l1) else pd.Series(dtype=float)
    utility_net = metered.add(bought.rename_axis(["prosumer", "slot"]), fill_value=0.0).sub(
        sold.rename_axis(["prosumer", "slot"]), fill_value=0.0)
    hours = (start.hour + start.minute / 60 + utility_net.index.get_level_values("slot") * 0.5) % 24
    retail = np.array([tariff.retail_at(h) for h in hours])
    price = np.where(utility_net.to_numpy() > 0, tariff.buyback_price_per_kwh, retail)
    utility_cost = (-utility_net * price).groupby(level="prosumer").sum()
    pay = (l1["energy_kwh"] * l1["price_per_kwh"]) if len(l1) else pd.Series(dtype=float)
    p2p_cost = (pay.groupby(l1["buyer"]).sum() if len(l1) else pd.Series(dtype=float)).sub(
        pay.groupby(l1["seller"]).sum() if len(l1) else pd.Series(dtype=float), fill_value=0.0)
    df = pd.DataFrame({"utility_cost": utility_cost}).join(p2p_cost.rename("p2p_cost")).fillna(0.0)
    df["total_cost"] = df["utility_cost"] + df["p2p_cost"]
    return df.rename_axis("prosumer").reset_index()


def kpis(frames: dict[str, pd.DataFrame], costs: pd.DataFrame) -> dict[str, float]:
    steps, feeder, trades, anc = frames["prosumer_steps"], frames["feeder_steps"], frames["trades"], \
        frames["ancillary"]
    ledger = frames["ledger"]
    anc_items = ledger[ledger["item"].astype(str).str.startswith("ancillary_")] if len(ledger) else ledger
    pen = ledger[ledger["item"] == "penalty"] if len(ledger) else ledger
    gen = (steps["pv_kw"] - steps["curtailed_kw"]).clip(lower=0) * TICK_H if len(steps) else pd.Series(dtype=float)
    demand = (steps["load_kw"] + steps["flex_kw"]) * TICK_H if len(steps) else pd.Series(dtype=float)
    export = steps["grid_kw"].clip(lower=0) * TICK_H if len(steps) else pd.Series(dtype=float)
    imports = (-steps["grid_kw"]).clip(lower=0) * TICK_H if len(steps) else pd.Series(dtype=float)
    p2p = float(trades.loc[trades["layer"] == 1, "energy_kwh"].sum()) if len(trades) else 0.0
    self_consumed = float(gen.sum() - export.sum()) + p2p if len(steps) else 0.0
    head = feeder["p_head_kw"] if len(feeder) else pd.Series(dtype=float)
    out = {
        "total_cost": float(costs["total_cost"].sum()) - float(anc_items["amount"].sum()) - float(pen["amount"].sum()),
        "p2p_energy_kwh": p2p,
        "l3_energy_kwh": float(trades.loc[trades["layer"] == 3, "energy_kwh"].sum()) if len(trades) else 0.0,
        "ancillary_awarded_kw_h": float((anc.loc[anc["offer_price"].notna(), "awarded_kw"] * 0.25).sum())
        if len(anc) else 0.0,
        "ancillary_revenue": float(anc_items["amount"].sum()),
        "penalties": float(-pen["amount"].sum()),
        "self_sufficiency_pct": 100 * self_consumed / float(demand.sum()) if len(steps) and demand.sum() else 0.0,
        "self_consumption_pct": 100 * self_consumed / float(gen.sum()) if len(steps) and gen.sum() else 0.0,
        "unmet_flexible_kwh": float(steps["unmet_flex_kwh"].sum()) if len(steps) else 0.0,
        "voltage_violation_minutes": float((feeder["n_violations"] > 0).sum() * 5) if len(feeder) else 0.0,
        "losses_kwh": float(feeder["losses_kw"].sum() * TICK_H) if len(feeder) else 0.0,
        "peak_import_kw": float(head.max()) if len(head) else 0.0,
        "v_max_pu": float(feeder["v_max_pu"].max()) if len(feeder) else float("nan"),
        "v_min_pu": float(feeder["v_min_pu"].min()) if len(feeder) else float("nan"),
        "nonconverged_steps": int((~feeder["converged"].astype(bool)).sum()) if len(feeder) else 0,
        "corrective_actions": int(len(frames["corrective"])),
        "community_import_kwh": float(imports.sum()),
        "community_export_kwh": float(export.sum()),
    }
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}


def write_kpis(run_dir: Path, figures: dict) -> Path:
    path = Path(run_dir) / "kpis.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return path
