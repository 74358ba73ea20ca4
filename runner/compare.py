"""``harmony compare``: the same prosumers, devices, preferences and weather under every market arrangement.

Modes (``federates.common.config.MODES``): ``topdown`` (utility tariff with net billing, same optimising
controller, no P2P, no VPP), ``netmetering`` (exports credited at the retail rate), ``layer1`` (+ feeder P2P
markets), ``layer12`` (+ VPP ancillary participation), ``full`` (+ the inter-VPP market).

Comparison KPIs added to each mode's kpis.json:
- ``savings_vs_topdown_pct`` / ``savings_vs_netmetering_pct``: (cost of the reference - cost) / |cost of the
  reference| x 100 for the whole community, on ``total_cost`` (stored energy included, so modes that drain the
  batteries differently compare on the same footing);
- ``prosumers_losing_money_pct``: share of prosumers whose ``total_cost`` (cash paid net of cash received,
  minus the value of the energy their battery gained: ``runner.results``) is more than a cent
  (``LOSS_THRESHOLD``) above their top-down ``total_cost`` over the run (should be 0);
- ``savings_gini``: Gini coefficient of the prosumers' savings against top-down (0 = evenly spread; computed on
  savings shifted to be non-negative);
- ``penalties_avoided`` (mode full): penalties of ``layer12`` (Layer III off, same seed) minus penalties of
  ``full``; a single run's kpis.json instead settles its own metered delivery without the Layer III credits.

Community batteries (``feeders[i].vpp.community_battery``): when the scenario has any, ``full`` is run once more
without them (``full_no_community_battery/``, a row of ``comparison.csv``), and ``community_battery_value.csv``
gives each prosumer's ``community_battery_value``: its ``total_cost`` without the batteries minus with them ($,
+ = the batteries saved it money; their value reaches members through the VPP's revenue sharing, the
settlement of their energy and the share of their stored energy, :mod:`runner.storage`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from federates.common.config import MODES, Scenario

LOSS_THRESHOLD = 0.01  # $ over the run: smaller differences are solver and rounding noise

COLUMNS = ("total_cost", "cash_cost", "stored_energy_change_kwh", "stored_energy_value", "savings_vs_topdown_pct",
           "savings_vs_netmetering_pct", "prosumers_losing_money_pct", "savings_gini", "p2p_energy_kwh",
           "ancillary_revenue", "penalties", "penalties_avoided", "l3_energy_kwh", "self_sufficiency_pct",
           "self_consumption_pct", "self_sufficiency_prosumer_pct", "self_consumption_prosumer_pct",
           "p2p_share_of_demand_pct", "unmet_flexible_kwh", "voltage_violation_minutes", "losses_kwh",
           "peak_import_kw", "wall_s")


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 when all equal or all zero)."""
    v = np.sort(np.asarray(values, dtype=float))
    if len(v) == 0 or v.sum() <= 0:
        return 0.0
    n = len(v)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(v) / (n * v.sum()))


def savings_pct(reference: float, cost: float) -> float:
    return 100.0 * (reference - cost) / abs(reference) if reference else 0.0


def comparison_kpis(figures: dict[str, dict], costs: dict[str, pd.Series]) -> dict[str, dict]:
    """Add the comparison KPIs to each mode's figures (``costs``: per-prosumer ``total_cost`` per mode, stored
    energy included, as in ``results/prosumer_kpis.csv``)."""
    top, net = figures["topdown"]["total_cost"], figures["netmetering"]["total_cost"]
    base = costs["topdown"]
    pen_avoided = figures["layer12"]["penalties"] - figures["full"]["penalties"]
    out = {}
    for mode, f in figures.items():
        saved = (base - costs[mode].reindex(base.index)).to_numpy()
        out[mode] = dict(f, savings_vs_topdown_pct=savings_pct(top, f["total_cost"]),
                         savings_vs_netmetering_pct=savings_pct(net, f["total_cost"]),
                         prosumers_losing_money_pct=100.0 * float(np.mean(saved < -LOSS_THRESHOLD)),
                         savings_gini=gini(saved - min(saved.min(), 0.0)),
                         penalties_avoided=pen_avoided if mode == "full" else f.get("penalties_avoided", 0.0))
    return out


def run_all(sc: Scenario, out_dir: Path, execute, *, show_progress: bool = False) -> pd.DataFrame:
    """Run every mode into ``out_dir/<mode>/``; write each kpis.json and ``out_dir/comparison.csv``."""
    figures, costs = {}, {}
    for mode in MODES:
        run_dir = out_dir / mode
        figures[mode] = execute(sc.model_copy(update={"mode": mode}), run_dir, show_progress=show_progress)
        per = pd.read_csv(run_dir / "results" / "prosumer_kpis.csv")
        costs[mode] = per.set_index("prosumer")["total_cost"]
    full = comparison_kpis(figures, costs)
    for mode, f in full.items():
        (out_dir / mode / "kpis.json").write_text(json.dumps(f, indent=2, sort_keys=True) + "\n")
    table = pd.DataFrame({m: {c: full[m].get(c, np.nan) for c in COLUMNS} for m in MODES}).T
    if any(f.vpp.community_battery is not None for f in sc.feeders):
        row, value = without_community_battery(sc, out_dir, execute, costs["full"], show_progress=show_progress)
        table.loc[NO_BATTERY] = {c: row.get(c, np.nan) for c in COLUMNS}
        value.to_csv(out_dir / "community_battery_value.csv")
    table.index.name = "mode"
    table.to_csv(out_dir / "comparison.csv")
    pd.concat(costs, axis=1).to_csv(out_dir / "prosumer_costs.csv")
    return table


NO_BATTERY = "full_no_community_battery"


def without_community_battery(sc: Scenario, out_dir: Path, execute, with_costs: pd.Series, *,
                              show_progress: bool = False) -> tuple[dict, pd.DataFrame]:
    """Run ``full`` without any community battery; return its figures and, per prosumer, total_cost with and
    without the batteries and ``community_battery_value`` (without - with, $)."""
    feeders = [f.model_copy(update={"vpp": f.vpp.model_copy(update={"community_battery": None})})
               for f in sc.feeders]
    run_dir = out_dir / NO_BATTERY
    figures = execute(sc.model_copy(update={"mode": "full", "feeders": feeders}), run_dir, show_progress=show_progress)
    without = pd.read_csv(run_dir / "results" / "prosumer_kpis.csv").set_index("prosumer")["total_cost"]
    value = pd.DataFrame({"total_cost_with": with_costs, "total_cost_without": without.reindex(with_costs.index)})
    value["community_battery_value"] = value["total_cost_without"] - value["total_cost_with"]
    value.index.name = "prosumer"
    return figures, value
