"""``harmony report``: one self-contained HTML page of a run's figures and tables.

:func:`write_report` reads ``RUN/results/*.csv`` (columns declared in ``federates/common/tables.py``),
``RUN/results/prosumer_kpis.csv``, ``RUN/kpis.json``, the run's federate configs (``RUN/federates/*.json``: the
tariff, the clock, each feeder's voltage limits) and, with ``--compare``, the folder of ``harmony compare``. It
writes ``RUN/figures/<name>.png`` (and ``<name>.csv``, the data of the figures prepared by
:mod:`runner.report_data`) and ``RUN/report.html``, which embeds the same PNGs as base64 data URIs with inline
CSS: no external resources, so the file can be mailed or archived alone.

Sign convention (project-wide): a prosumer's ``grid_kw`` > 0 is export into the distribution network, < 0
import; the feeder head ``p_head_kw`` > 0 means the substation supplies the feeder.

Figures are drawn on :class:`matplotlib.figure.Figure` objects attached to the Agg canvas explicitly, so
nothing touches pyplot's global backend state; nothing is random.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from pydantic import ValidationError

from federates.common.config import MODES
from federates.common.errors import ConfigError
from federates.common.tables import TABLES
from federates.common.timebase import L1_PERIOD_S, L2_PERIOD_S, L3_PERIOD_S, TICK_S
from federates.prosumer.devices import TariffConfig
from runner import report_data as rd
from runner import storage

log = logging.getLogger(__name__)

DPI = 100
V_LOW_PU, V_HIGH_PU = 0.95, 1.05
READ = ("trades", "ancillary", "prosumer_steps", "feeder_steps", "voltages", "placement", "ledger")

KPI_DEFINITIONS: dict[str, str] = {
    "total_cost": "sum over prosumers of cash_cost - stored_energy_value: what each paid net of everything it "
                  "received, plus the value of the energy its battery lost over the run ($; negative = net "
                  "income)",
    "cash_cost": "sum over prosumers of what each paid net of everything it received, from the ledger ($)",
    "stored_energy_change_kwh": "energy in all batteries at the end minus at the start of the run (kWh)",
    "stored_energy_value": "value of that change, not a cash flow: a deficit costs its refill through the meter "
                           "(kWh / eta_charge x the run's mean retail price), a surplus earns its sale (kWh x "
                           "eta_discharge x the run's mean export credit) ($)",
    "p2p_energy_kwh": "energy traded between prosumers in the Layer I feeder markets (kWh)",
    "l3_energy_kwh": "energy traded between VPPs in the Layer III inter-VPP market (kWh)",
    "ancillary_revenue": "ancillary-service payments received from the ISO, all products ($)",
    "penalties": "penalties paid to the ISO for ancillary under-delivery ($)",
    "self_sufficiency_pct": "locally produced energy consumed / demand x 100, physical, inside each feeder's "
                            "community (a neighbour's PV and stored PV count, energy charged from outside does "
                            "not), all feeders energy-weighted; per feeder: self_sufficiency_pct_<feeder> (%)",
    "self_consumption_pct": "locally produced energy consumed / PV production (after curtailment) x 100, inside "
                            "each feeder's community, all feeders energy-weighted; per feeder: "
                            "self_consumption_pct_<feeder> (%)",
    "self_sufficiency_prosumer_pct": "the same behind each meter (own PV and own battery only), summed over "
                                     "prosumers before dividing by their demand (%)",
    "self_consumption_prosumer_pct": "the same behind each meter, summed over prosumers before dividing by "
                                     "their production (%)",
    "p2p_share_of_demand_pct": "energy bought in the Layer I feeder markets / demand x 100 (traded, not "
                               "physical) (%)",
    "penalties_avoided": "penalties the ISO would have charged for the same metered delivery without the "
                         "VPPs' Layer III credits, minus those charged ($)",
    "unmet_flexible_kwh": "flexible-load energy not served by its deadline (kWh)",
    "voltage_violation_minutes": "minutes in which any feeder had a voltage or loading violation (min)",
    "losses_kwh": "network losses of all feeders over the run (kWh)",
    "peak_import_kw": "highest total feeder-head power drawn from the substations, feeders summed (kW)",
    "v_max_pu": "highest prosumer-bus voltage on any feeder (per unit)",
    "v_min_pu": "lowest prosumer-bus voltage on any feeder (per unit)",
    "nonconverged_steps": "feeder power flows that did not converge (count)",
    "corrective_actions": "export/import caps and releases the VPPs set to keep the feeders within limits "
                          "(count)",
    "energy_balance_residual_kwh": "worst mismatch, per market and slot, between accepted buy, accepted sell "
                                   "and traded energy (kWh; 0 when consistent)",
    "feeder_balance_residual_kwh": "head energy - energy drawn by loads and DER - losses, over converged "
                                   "steps (kWh; about 0)",
    "money_balance_residual": "sum of all payments between internal parties ($; 0 when every payment has "
                              "its opposite entry)",
    "vpp_retained": "money the non-profit VPPs kept after sharing their revenue ($; 0 expected)",
    "hems_fallbacks": "prosumer decisions (HEMS solves) that failed and fell back to a safe grid-only plan (count; "
                      "0 expected)",
    "community_battery_stored_value": "value of the change in the VPPs' community batteries' stored energy, "
                                      "priced like the prosumers' and shared with the members ($)",
    "community_battery_cycled_kwh": "energy the community batteries charged plus discharged at their terminals "
                                    "(kWh)",
    "community_battery_reserve_kwh": "ancillary reserve the community batteries held, up plus down (kW x h)",
    "mode": "market arrangement: topdown, netmetering, layer1, layer12 or full",
    "prosumers": "number of prosumers in the run",
    "wall_s": "wall-clock time of the co-simulation (s)",
}
COMPARISON_DEFINITIONS: dict[str, str] = {
    "savings_vs_topdown_pct": "(community cost under topdown - cost) / |cost under topdown| x 100 (%)",
    "savings_vs_netmetering_pct": "(community cost under netmetering - cost) / |cost under netmetering| "
                                  "x 100 (%)",
    "prosumers_losing_money_pct": "share of prosumers whose total_cost (stored energy included) is more than "
                                  "a cent higher than under topdown (%)",
    "savings_gini": "Gini coefficient of the prosumers' savings against topdown (0 = evenly spread)",
    "penalties_avoided": "(mode full) penalties under layer12 (Layer III off, same seed) - penalties under "
                         "full: Layer III's contribution ($)",
}

# the themes the key figures are grouped by, in the order the report shows them, with what each holds
THEMES: dict[str, str] = {
    "money": "what the prosumers paid, all mechanisms and storage included",
    "markets": "what the P2P, ancillary and inter-VPP markets traded and earned",
    "energy": "where the energy came from and went",
    "grid": "what the feeders' power flows saw",
    "run": "what ran, and the checks that its books and physics balance",
}
KPI_THEME: dict[str, str] = {
    "total_cost": "money", "cash_cost": "money", "stored_energy_value": "money",
    "community_battery_stored_value": "money", "savings_vs_topdown_pct": "money", "savings_vs_netmetering_pct": "money",
    "prosumers_losing_money_pct": "money", "savings_gini": "money",
    "p2p_energy_kwh": "markets", "l3_energy_kwh": "markets", "p2p_share_of_demand_pct": "markets",
    "ancillary_revenue": "markets", "penalties": "markets", "penalties_avoided": "markets",
    "self_sufficiency_pct": "energy", "self_consumption_pct": "energy", "self_sufficiency_prosumer_pct": "energy",
    "self_consumption_prosumer_pct": "energy", "stored_energy_change_kwh": "energy", "unmet_flexible_kwh": "energy",
    "community_battery_cycled_kwh": "energy", "community_battery_reserve_kwh": "energy",
    "voltage_violation_minutes": "grid", "losses_kwh": "grid", "peak_import_kw": "grid", "v_min_pu": "grid",
    "v_max_pu": "grid", "nonconverged_steps": "grid", "corrective_actions": "grid",
    "mode": "run", "prosumers": "run", "wall_s": "run", "hems_fallbacks": "run",
    "energy_balance_residual_kwh": "run", "feeder_balance_residual_kwh": "run", "money_balance_residual": "run",
    "vpp_retained": "run",
}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1240px;
       color: #222; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { margin: 1.4em 0 .3em; } h3 small { font-weight: normal; color: #666; }
nav { font-size: .9em; } nav a { margin-right: 1em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: .9em; max-width: 60em; } figcaption code { font-size: .95em; }
table.dataframe { border-collapse: collapse; font-size: .85em; margin: .6em 0 1em; }
table.dataframe th, table.dataframe td { border: 1px solid #ddd; padding: .25em .5em; text-align: right;
                                         font-variant-numeric: tabular-nums; }
table.dataframe th { background: #f4f4f4; } table.dataframe tr:nth-child(even) td { background: #fafafa; }
table.kpis { width: 100%; table-layout: fixed; }
table.kpis col.key { width: 19em; } table.kpis col.value { width: 7em; } table.kpis th { text-align: left; }
table.kpis td:first-child, table.kpis td:last-child { text-align: left; }
table.kpis td:first-child { font-family: ui-monospace, monospace; font-size: .95em; overflow-wrap: anywhere; }
table.feeders td, table.feeders th { text-align: left; }
table.wide { font-size: .68em; margin: .6em 0 0; }
table.wide th { white-space: normal; vertical-align: bottom; text-align: center; padding: .2em .25em; }
table.wide td { white-space: nowrap; padding: .15em .25em; }
table.wide td:first-child, table.wide td:nth-child(2) { text-align: left; }
table.wide td:first-child, table.wide thead tr:last-child th:first-child { position: sticky; left: 0;
    background: #fff; }
dl dt { font-weight: 600; margin-top: .4em; } dl dd { margin-left: 1.5em; }
.note { color: #666; font-style: italic; } .scroll { overflow-x: auto; }
"""


@dataclass
class RunData:
    """What the figures need from one run folder.

    ``feeders``: feeder name -> its configuration as the run used it (``federates/feeder_<name>.json``, key
    ``feeder``: master file, voltage limits, market...); ``mode``: the run's market arrangement; ``bills``: each
    prosumer's bill by item (:func:`runner.report_data.bill_items`) under the run's mode and, when known, under
    top-down (``bills_note`` says where that came from)."""

    run_dir: Path
    frames: dict[str, pd.DataFrame]
    kpis: dict
    per_prosumer: pd.DataFrame
    tariff: TariffConfig | None = None
    start: datetime | None = None
    duration_s: float | None = None
    mode_costs: dict[str, pd.Series] = field(default_factory=dict)
    comparison: pd.DataFrame | None = None
    feeders: dict[str, dict] = field(default_factory=dict)
    mode: str = "?"
    bills: dict[str, pd.DataFrame] = field(default_factory=dict)
    bills_note: str = ""

    @property
    def start_hour(self) -> float:
        return self.start.hour + self.start.minute / 60 if self.start else 0.0

    @property
    def time_label(self) -> str:
        since = f" from {self.start:%Y-%m-%d %H:%M}" if self.start else " since the start"
        return f"time (h{since})"

    def limits(self, feeder: str) -> tuple[float, float]:
        """The feeder's service voltage limits (pu) as configured, ANSI C84.1 range A when not known."""
        cfg = self.feeders.get(feeder, {})
        return float(cfg.get("v_min_pu", V_LOW_PU)), float(cfg.get("v_max_pu", V_HIGH_PU))


# ----------------------------------------------------------------------------------------------------------
# reading


def read_table(run_dir: Path, table: str) -> pd.DataFrame:
    """``results/<table>.csv`` with its declared columns (missing ones, e.g. of a run made before they were
    recorded, as NaN) and any others it has; an empty frame when missing or empty."""
    path = run_dir / "results" / f"{table}.csv"
    columns = list(TABLES[table])
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=columns)
    df = pd.read_csv(path)
    for col in columns:
        if col not in df:
            df[col] = np.nan
    return df


def read_scenario_bits(run_dir: Path) -> tuple[TariffConfig | None, datetime | None, float | None]:
    """Tariff, start and duration from the run's first prosumer federate config (None when absent)."""
    configs = sorted((run_dir / "federates").glob("prosumers_*.json"))
    if not configs:
        return None, None, None
    data = json.loads(configs[0].read_text())
    runtime = data.get("runtime", {})
    start = datetime.fromisoformat(runtime["start"]) if runtime.get("start") else None
    tariff = None
    if "tariff" in data:
        try:
            tariff = TariffConfig.model_validate(data["tariff"])
        except ValidationError as exc:
            log.warning("%s: tariff not readable, tariff lines omitted (%s)", configs[0],
                        exc.errors()[0]["msg"])
    return tariff, start, runtime.get("duration_s")


def read_feeders(run_dir: Path) -> tuple[dict[str, dict], str | None]:
    """Each feeder's configuration (``federates/feeder_<name>.json``, key ``feeder``) and the run's mode."""
    feeders, mode = {}, None
    for path in sorted((run_dir / "federates").glob("feeder_*.json")):
        data = json.loads(path.read_text())
        if "feeder" in data:
            feeders[data["feeder"]["name"]] = data["feeder"]
            mode = mode or data.get("runtime", {}).get("mode")
    return feeders, mode


def read_mode_costs(compare_dir: Path) -> dict[str, pd.Series]:
    """Per mode present in ``compare_dir/<mode>/results/prosumer_kpis.csv``: total_cost by prosumer."""
    costs = {}
    for mode in MODES:
        path = compare_dir / mode / "results" / "prosumer_kpis.csv"
        if not path.is_file():
            log.warning("compare: %s missing, mode %s left out", path, mode)
            continue
        df = pd.read_csv(path)
        if len(df):
            costs[mode] = df.set_index("prosumer")["total_cost"]
    return costs


def read_bills(d: RunData, compare_dir: Path | None) -> tuple[dict[str, pd.DataFrame], str]:
    """Each prosumer's bill by item in the run's mode and under top-down: from the top-down run of the
    comparison when there is one, else from the run's own top-down twins (the guarantee's reference)."""
    if d.per_prosumer.empty or "prosumer" not in d.per_prosumer:
        return {}, ""
    bills = {d.mode: rd.bill_items(d.frames["ledger"], d.per_prosumer)}
    if d.mode == "topdown":
        return bills, "this run is top-down"
    topdown = compare_dir / "topdown" / "results" if compare_dir is not None else None
    if topdown is not None and (topdown / "ledger.csv").is_file() and (topdown / "prosumer_kpis.csv").is_file():
        bills["topdown"] = rd.bill_items(pd.read_csv(topdown / "ledger.csv"),
                                         pd.read_csv(topdown / "prosumer_kpis.csv"))
        return bills, f"top-down: the top-down run of the comparison ({topdown.parent})"
    steps = d.frames["prosumer_steps"]
    if d.tariff is not None and d.start is not None and len(steps) and steps["topdown_grid_kw"].notna().all():
        eta = storage.efficiencies(d.run_dir, steps)
        bills["topdown"] = rd.twin_bill_items(steps, d.tariff, d.start, eta)
        return bills, ("top-down: each prosumer's top-down twin in this run (same devices, weather and "
                       "controller, utility tariff only; the VPP guarantee's reference)")
    return bills, "no top-down reference in this run (net metering has no twin; give --compare for one)"


def load_run(run_dir: Path, compare_dir: Path | None = None) -> RunData:
    if not (run_dir / "results").is_dir():
        raise ConfigError(f"{run_dir}: no results/ folder; give a run folder written by `harmony run` "
                          "(or run `harmony collect` on it first)")
    frames = {t: read_table(run_dir, t) for t in READ}
    kpi_path = run_dir / "kpis.json"
    kpis = json.loads(kpi_path.read_text()) if kpi_path.is_file() else {}
    per_path = run_dir / "results" / "prosumer_kpis.csv"
    per = pd.read_csv(per_path) if per_path.is_file() and per_path.stat().st_size else pd.DataFrame()
    tariff, start, duration = read_scenario_bits(run_dir)
    feeders, mode = read_feeders(run_dir)
    data = RunData(run_dir, frames, kpis, per, tariff, start, duration, feeders=feeders,
                   mode=str(kpis.get("mode") or mode or "?"))
    if compare_dir is not None:
        if not compare_dir.is_dir():
            raise ConfigError(f"compare folder {compare_dir} not found; give the --out folder of "
                              "`harmony compare`")
        data.mode_costs = read_mode_costs(compare_dir)
        table = compare_dir / "comparison.csv"
        data.comparison = pd.read_csv(table, index_col=0) if table.is_file() else None
    data.bills, data.bills_note = read_bills(data, compare_dir)
    return data


# ----------------------------------------------------------------------------------------------------------
# figures


def new_figure(width: float, height: float, rows: int = 1, *, sharex: bool = True):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def say_empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=14, color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def feeder_rows(names: list[str], row_height: float, empty: str, title: str, *, sharex: bool = True):
    """A figure with one row of axes per feeder in ``names``; with none, one row saying ``empty`` under
    ``title``."""
    fig, axes = new_figure(12, 1.0 + row_height * max(1, len(names)), rows=max(1, len(names)), sharex=sharex)
    if not names:
        say_empty(axes[0], empty)
        axes[0].set_title(title)
    return fig, axes


def hours(seconds) -> np.ndarray:
    return np.asarray(seconds, dtype=float) / 3600.0


def run_end_h(d: RunData) -> float:
    if d.duration_s:
        return float(d.duration_s) / 3600
    times = [f["time"].max() for f in d.frames.values() if len(f)]
    return (max(times) + TICK_S) / 3600 if times else 24.0


def figure_prices(d: RunData) -> Figure:
    """Layer I and Layer III trade prices and tariffs ($/kWh); ancillary clearing prices ($/MW-h)."""
    fig, (top, bottom) = new_figure(12, 7.5, rows=2)
    trades = d.frames["trades"]
    drew = draw_trade_prices(top, trades)
    if d.tariff is not None:
        h = np.arange(0, run_end_h(d) + 1e-9, TICK_S / 3600)
        top.step(h, d.tariff.retail_array(d.start_hour + h), where="post", color="k", lw=1.5,
                 label="retail tariff")
        top.step(h, d.tariff.export_price_array(d.start_hour + h), where="post", color="k", ls="--", lw=1.2,
                 label="buy-back (export credit)")
        drew = True
    if drew:
        top.set_ylabel("price ($/kWh)")
        top.legend(fontsize=8, loc="upper left", ncol=2)
        top.grid(alpha=0.3)
        if trades.empty:
            top.text(0.99, 0.97, "no trades in this run", transform=top.transAxes, ha="right", va="top",
                     color="#777")
    else:
        say_empty(top, "no trades in this run")
    top.set_title("Energy prices: Layer I (feeder P2P), Layer III (inter-VPP) and the utility tariff "
                  "(marker area ~ traded energy)")
    draw_ancillary_prices(bottom, d)
    bottom.set_xlabel(d.time_label)
    return fig


def draw_trade_prices(ax, trades: pd.DataFrame) -> bool:
    """Layer I and III trades at the middle of their slot, marker area ~ energy; True when any was drawn."""
    top = float(trades["energy_kwh"].max()) if len(trades) else 1.0
    for layer, period, marker in ((1, L1_PERIOD_S, "o"), (3, L3_PERIOD_S, "^")):
        rows = trades[trades["layer"] == layer]
        for market, g in rows.groupby("market", sort=True):
            x = hours((g["slot"] + 0.5) * period)
            size = 12 + 60 * np.sqrt(g["energy_kwh"] / top)
            name = f"Layer {'I' if layer == 1 else 'III'} {market}"
            ax.scatter(x, g["price_per_kwh"], s=size, marker=marker, alpha=0.7, label=name)
    return bool(trades["layer"].isin([1, 3]).any())


def draw_ancillary_prices(ax, d: RunData) -> None:
    anc = d.frames["ancillary"]
    awards = anc[anc["offer_price"].notna() & anc["clearing_price"].notna()]
    ax.set_title("Layer II: ancillary-service clearing prices")
    if awards.empty:
        say_empty(ax, "no ancillary market in this run")
        return
    for product, g in awards.groupby("product", sort=True):
        per_slot = g.groupby("slot")["clearing_price"].mean()
        x = hours(per_slot.index.to_numpy() * L2_PERIOD_S)
        ax.step(np.append(x, x[-1] + L2_PERIOD_S / 3600), np.append(per_slot.to_numpy(), per_slot.iloc[-1]),
                where="post", label=str(product))
    ax.set_ylabel("clearing price ($/MW-h)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)


def draw_tariff(ax, d: RunData) -> None:
    """The retail tariff and the buy-back rate (export credit) over the run, 5-minute steps."""
    if d.tariff is None:
        return
    h = np.arange(0, run_end_h(d) + 1e-9, TICK_S / 3600)
    ax.step(h, d.tariff.retail_array(d.start_hour + h), where="post", color="k", lw=1.8, label="retail tariff")
    credit = "net metering: retail" if d.tariff.net_metering else "buy-back rate (export credit)"
    ax.step(h, d.tariff.export_price_array(d.start_hour + h), where="post", color="k", ls="--", lw=1.4, label=credit)


def figure_p2p_prices(d: RunData) -> Figure:
    """Per feeder market: the P2P price of each Layer I slot (energy-weighted mean, lowest to highest trade)
    against the retail tariff and the buy-back rate, with the energy traded."""
    slots = rd.p2p_price_slots(d.frames["trades"])
    markets = sorted(set(slots["market"]) | {f"vpp_{f}" for f in d.feeders if d.kpis.get(f"mechanism_{f}", "none")
                                              not in ("none", None)})
    fig, axes = new_figure(12, 1.0 + 3.6 * max(1, len(markets)), rows=max(1, len(markets)))
    if not markets:
        ax = axes[0]
        ax.set_title("P2P price against the utility tariff")
        if d.tariff is None:
            say_empty(ax, "no Layer I market in this run")
            return fig
        draw_tariff(ax, d)
        ax.text(0.5, 0.5, "no Layer I market in this run", transform=ax.transAxes, ha="center", fontsize=14,
                color="#777")
        ax.set_ylabel("price ($/kWh)")
        ax.legend(fontsize=8, loc="upper left")
        ax.set_xlabel(d.time_label)
        return fig
    top = float(slots["energy_kwh"].max()) if len(slots) else 1.0
    for ax, market in zip(axes, markets, strict=True):
        feeder = market.removeprefix("vpp_")
        mine = slots[slots["market"] == market]
        draw_tariff(ax, d)
        mechanism = d.kpis.get(f"mechanism_{feeder}", "?")
        if len(mine):
            x = hours(mine["start_s"] + L1_PERIOD_S / 2)
            mean = mine["mean_price_per_kwh"].to_numpy(dtype=float)
            err = np.clip(np.vstack([mean - mine["min_price_per_kwh"], mine["max_price_per_kwh"] - mean]), 0, None)
            ax.errorbar(x, mean, yerr=err, fmt="none", ecolor="tab:purple", elinewidth=1, capsize=2, zorder=3)
            ax.scatter(x, mean, s=12 + 100 * mine["energy_kwh"].to_numpy(dtype=float) / top, color="tab:purple",
                       edgecolor="k", lw=0.4, zorder=4,
                       label="P2P price: energy-weighted mean (area ~ energy; bar: lowest to highest trade)")
            volume = ax.twinx()
            volume.bar(x, mine["energy_kwh"], width=L1_PERIOD_S / 3600 * 0.8, color="#ccc", alpha=0.6, zorder=0)
            volume.set_ylabel("energy traded per slot (kWh)", color="#777")
            volume.set_ylim(0, top * 3)  # bars in the lower third, under the prices
            ax.set_zorder(volume.get_zorder() + 1)
            ax.patch.set_visible(False)
            total = float(mine["energy_kwh"].sum())
            mean_all = float((mine["mean_price_per_kwh"] * mine["energy_kwh"]).sum() / total) if total else float("nan")
            ax.set_title(f"Feeder {feeder} ({mechanism}): {total:.2f} kWh traded in {len(mine)} slots at "
                         f"{mean_all:.4f} $/kWh on average")
        else:
            ax.set_title(f"Feeder {feeder} ({mechanism}): no P2P trades in this run")
        ax.set_ylabel("price ($/kWh)")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Patch(color="#ccc", label="energy traded (right axis)"))
        ax.legend(handles=handles, fontsize=8, loc="upper left", ncol=2)
    axes[-1].set_xlabel(d.time_label)
    return fig


MAX_VPP_ROWS = 4  # VPPs shown one per row; with more, the figure sums them


def figure_ancillary(d: RunData) -> Figure:
    """Per VPP (or all VPPs together when there are many) and product: the capacity offered and awarded at each
    15-minute clearing, what the ISO's signal or deployment asked of it and what was delivered every 5 minutes,
    and the intervals penalised."""
    anc = d.frames["ancillary"]
    vpps = sorted(anc["vpp"].dropna().unique()) if len(anc) else []
    by_vpp = len(vpps) <= MAX_VPP_ROWS
    awards, deliveries = rd.award_series(anc, by_vpp=by_vpp)
    summary = rd.award_summary(anc if by_vpp else anc.assign(vpp="all VPPs"))
    products = [p for p in ("reg_up", "reg_down", "spin") if p in set(awards["product"]) | set(deliveries["product"])]
    rows = vpps if by_vpp else ["all VPPs"]
    fig = Figure(figsize=(14, 1.2 + 3.0 * max(1, len(rows))), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(max(1, len(rows)), max(1, len(products)), sharex=True, squeeze=False)
    if not rows or not products:
        say_empty(grid[0, 0], "no ancillary market in this run")
        grid[0, 0].set_title("Ancillary services: award and delivery")
        return fig
    for i, vpp in enumerate(rows):
        for j, product in enumerate(products):
            draw_award(grid[i, j], vpp, product, awards, deliveries, summary)
    for ax in grid[-1]:
        ax.set_xlabel(d.time_label)
    handles = [Line2D([], [], color="#555", ls=":", lw=1.2, label=OFFERED),
               Line2D([], [], color="tab:blue", lw=1.8, label=AWARDED),
               Patch(color="#bbb", label=ASKED), Line2D([], [], color="tab:green", lw=0.9, label=DELIVERED),
               Line2D([], [], color="tab:red", marker="x", ls="", label=PENALISED)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    return fig


def draw_award(ax, vpp: str, product: str, awards: pd.DataFrame, deliveries: pd.DataFrame,
               summary: pd.DataFrame) -> None:
    a = awards[(awards["vpp"] == vpp) & (awards["product"] == product)]
    x = deliveries[(deliveries["vpp"] == vpp) & (deliveries["product"] == product)]
    slot_h = L2_PERIOD_S / 3600
    if len(x):
        t = np.append(hours(x["start_s"]), hours(x["start_s"].iloc[-1]) + TICK_S / 3600)
        if x["required_kw"].notna().any():
            asked = np.append(x["required_kw"].to_numpy(dtype=float), x["required_kw"].iloc[-1])
            ax.fill_between(t, 0, asked, step="post", color="#bbb", alpha=0.8, lw=0, label=ASKED)
        ax.step(t, np.append(x["delivered_kw"].to_numpy(dtype=float), x["delivered_kw"].iloc[-1]), where="post",
                color="tab:green", lw=0.9, label=DELIVERED)
        hit = x[x["penalty"] > 1e-9]
        if len(hit):
            ax.scatter(hours(hit["start_s"] + TICK_S / 2), hit["delivered_kw"], marker="x", color="tab:red",
                       s=15 + 150 * hit["penalty"] / hit["penalty"].max(), lw=1.2, zorder=4, label=PENALISED)
    if len(a):
        t = np.append(hours(a["start_s"]), hours(a["start_s"].iloc[-1]) + slot_h)
        for column, style in (("offered_kw", {"color": "#555", "ls": ":", "lw": 1.2, "label": OFFERED}),
                              ("awarded_kw", {"color": "tab:blue", "lw": 1.8, "label": AWARDED})):
            ax.step(t, np.append(a[column].to_numpy(dtype=float), a[column].iloc[-1]), where="post", **style)
    ax.set_title(f"{vpp} {product}", fontsize=10)
    if (vpp, product) in summary.index:
        ax.text(0.99, 0.98, award_caption(summary.loc[(vpp, product)]), transform=ax.transAxes, ha="right",
                va="top", fontsize=7.5, bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "lw": 0.5})
    ax.set_ylabel("power (kW)")
    ax.set_ylim(bottom=0)
    ax.margins(y=0.25)
    ax.grid(alpha=0.3)


OFFERED, AWARDED = "capacity offered (15 min)", "capacity awarded (15 min)"
ASKED, DELIVERED = "asked: signal x award, or reserve deployed (5 min)", "delivered in the product's direction (5 min)"
PENALISED = "penalised interval (size ~ penalty)"


def award_caption(row: pd.Series) -> str:
    lines = [f"awarded {row['awarded_kwh']:.0f} of {row['offered_kwh']:.0f} kW x h offered"]
    if np.isfinite(row["required_kwh"]):
        lines.append(f"delivered {row['delivered_kwh']:.1f} of {row['required_kwh']:.1f} kWh asked"
                     + (f", accuracy {100 * row['accuracy']:.0f} %" if np.isfinite(row["accuracy"]) else ""))
    else:
        lines.append(f"delivered {row['delivered_kwh']:.1f} kWh")
    lines.append(f"penalties {row['penalty']:.2f} $ in {int(row['penalised_intervals'])} intervals")
    return "\n".join(lines)


def figure_grid(d: RunData) -> Figure:
    """Per feeder: prosumers' summed net export (grid_kw) and the feeder-head power."""
    steps, feeder = d.frames["prosumer_steps"], d.frames["feeder_steps"]
    names = sorted(set(steps["feeder"].dropna()) | set(feeder["feeder"].dropna()))
    fig, axes = feeder_rows(names, 3.0, "no prosumer or feeder steps in this run", "Community import/export")
    if not names:
        return fig
    for ax, name in zip(axes, names, strict=True):
        mine = steps[steps["feeder"] == name]
        if len(mine):
            net = mine.groupby("time")["grid_kw"].sum()
            ax.plot(hours(net.index), net.to_numpy(), color="tab:green",
                    label="prosumers' net export, sum of grid_kw (+ = export, - = import)")
        head = feeder[feeder["feeder"] == name].groupby("time")["p_head_kw"].sum()
        if len(head):
            ax.plot(hours(head.index), head.to_numpy(), color="tab:red",
                    label="feeder head p_head_kw (+ = substation supplies the feeder)")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(f"Feeder {name}: community import/export")
        ax.set_ylabel("power (kW)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel(d.time_label)
    return fig


def figure_soc(d: RunData) -> Figure:
    """State of charge of every battery (thin lines, left axis) and the fleet total (right axis)."""
    fig, (ax,) = new_figure(12, 5)
    ax.set_title("Battery state of charge")
    steps = d.frames["prosumer_steps"]
    soc = steps.pivot_table(index="time", columns="prosumer", values="soc_kwh", aggfunc="mean") \
        if len(steps) else pd.DataFrame()
    soc = soc.loc[:, (soc.fillna(0).abs() > 1e-9).any()] if len(soc) else soc
    if soc.empty or soc.shape[1] == 0:
        say_empty(ax, "no batteries in this run")
        return fig
    x = hours(soc.index)
    ax.plot(x, soc.to_numpy(), color="tab:blue", lw=0.6, alpha=0.45)
    ax.set_ylabel("battery SOC (kWh)")
    ax.set_xlabel(d.time_label)
    ax.grid(alpha=0.3)
    total = ax.twinx()
    total.plot(x, soc.sum(axis=1).to_numpy(), color="tab:orange", lw=2.5)
    total.set_ylabel("fleet total SOC (kWh)")
    handles = [Line2D([], [], color="tab:blue", lw=0.8, label=f"each battery ({soc.shape[1]}), left axis"),
               Line2D([], [], color="tab:orange", lw=2.5, label="fleet total, right axis")]
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    return fig


HEATMAP_LABELS_MAX = 60  # prosumers per feeder up to which the heatmap names each row


def figure_voltages(d: RunData) -> Figure:
    """Heatmap of prosumer-bus voltages (prosumer x time), one panel per feeder, centred on 1.0 pu; rows ordered
    by distance from the source when it is recorded; the feeder's limits as heavy contours."""
    v = d.frames["voltages"]
    v = v[pd.to_numeric(v["v_pu"], errors="coerce").notna()]
    names = sorted(v["feeder"].dropna().unique()) if len(v) else []
    counts = [v.loc[v["feeder"] == n, "prosumer"].nunique() for n in names]
    heights = [min(8.0, max(2.0, 0.16 * c)) for c in counts] or [3.0]
    fig, axes = new_figure(12, 1.5 + sum(heights), rows=len(heights))
    if not names:
        say_empty(axes[0], "no voltages recorded in this run")
        axes[0].set_title("Prosumer-bus voltages")
        return fig
    dev = float(np.nanmax(np.abs(v["v_pu"].to_numpy(dtype=float) - 1.0)))
    half = max(0.06, dev if np.isfinite(dev) else 0.0)
    norm = Normalize(vmin=1.0 - half, vmax=1.0 + half)
    km = site_distances(d)
    mesh = None
    for ax, name in zip(axes, names, strict=True):
        grid = v[v["feeder"] == name].pivot_table(index="prosumer", columns="time", values="v_pu",
                                                  aggfunc="mean")
        by_distance = km.reindex(grid.index).notna().all()
        if by_distance:
            grid = grid.loc[km.reindex(grid.index).sort_values(kind="stable").index]
        lo, hi = d.limits(name)
        mesh = draw_heatmap(ax, grid, norm, (lo, hi))
        order = "nearest the source at the top" if by_distance else "by name"
        ax.set_title(f"Feeder {name}: prosumer-bus voltage (heavy contours at its limits {lo:g} and {hi:g} pu; "
                     f"rows {order})")
        ax.set_ylabel("prosumer" if len(grid) <= HEATMAP_LABELS_MAX else f"{len(grid)} prosumers")
    axes[-1].set_xlabel(d.time_label)
    bar = fig.colorbar(mesh, ax=axes, shrink=0.9, label="voltage (pu)")
    levels = sorted({lv for n in names for lv in d.limits(n)})
    for level in levels:
        bar.ax.axhline(level, color="k", lw=3.0)
    bar.set_ticks(sorted({round(1.0 - half, 3), 1.0, round(1.0 + half, 3), *levels}))
    return fig


def site_distances(d: RunData) -> pd.Series:
    """Prosumer -> distance of its bus from the feeder's source (km), from ``placement`` (empty if not recorded)."""
    pl = d.frames["placement"]
    pl = pl[pl["prosumer"].fillna("").astype(str) != ""]
    return pd.to_numeric(pl.set_index("prosumer")["distance_km"], errors="coerce").dropna() if len(pl) else \
        pd.Series(dtype=float)


def draw_heatmap(ax, grid: pd.DataFrame, norm: Normalize, limits: tuple[float, float] = (V_LOW_PU, V_HIGH_PU)):
    t = hours(grid.columns.to_numpy(dtype=float))
    step = float(np.median(np.diff(t))) if len(t) > 1 else TICK_S / 3600
    edges = np.append(t, t[-1] + step)
    values = np.ma.masked_invalid(grid.to_numpy(dtype=float))
    mesh = ax.pcolormesh(edges, np.arange(len(grid) + 1), values, cmap="RdBu_r", norm=norm, shading="flat")
    crossing = [lv for lv in limits if values.min() < lv < values.max()]
    if crossing and values.shape[1] > 1 and values.shape[0] > 1:
        lines = ax.contour(t + step / 2, np.arange(len(grid)) + 0.5, values, levels=crossing, colors="k",
                           linewidths=2.4)
        lines.set(path_effects=[patheffects.withStroke(linewidth=4.5, foreground="white")])
        ax.clabel(lines, fmt="%g pu", fontsize=8, inline=True)
    ax.set_yticks(np.arange(len(grid)) + 0.5)
    if len(grid) <= HEATMAP_LABELS_MAX:
        ax.set_yticklabels(grid.index, fontsize=6 if len(grid) > 12 else 8)
    else:
        ax.set_yticks([])
    ax.invert_yaxis()
    return mesh


def draw_limits(ax, lo: float, hi: float) -> None:
    """The feeder's service voltage limits as heavy dashed lines, 1.0 pu as a thin one."""
    for level, text in ((lo, "lower"), (hi, "upper")):
        ax.axhline(level, color="#b2182b" if level > 1 else "#2166ac", lw=2.0, ls="--", zorder=1,
                   label=f"{text} limit {level:g} pu")
    ax.axhline(1.0, color="#999", lw=0.7, zorder=0)


def figure_voltage_profile(d: RunData) -> Figure:
    """Voltage along each feeder: prosumer service voltage against its bus's distance from the source."""
    profile, moments = rd.voltage_profile(d.frames["voltages"], d.frames["placement"])
    names = sorted(profile["feeder"].unique())
    fig, axes = feeder_rows(names, 4.2, "no voltages recorded in this run", "Voltage along the feeder", sharex=False)
    if not names:
        return fig
    for ax, name in zip(axes, names, strict=True):
        mine = profile[profile["feeder"] == name]
        ax.set_title(f"Feeder {name}: prosumer service voltage along the feeder over the run")
        if mine["distance_km"].isna().all():
            say_empty(ax, "distance from the source not recorded in this run\n(placement.csv without distance_km)")
            continue
        x = mine["distance_km"].to_numpy(dtype=float)
        ax.vlines(x, mine["v_min_pu"], mine["v_max_pu"], color="#888", lw=3.5, alpha=0.55, zorder=2,
                  label="range over the run (min - max)")
        ax.scatter(x, mine["v_median_pu"], marker="_", s=140, color="k", lw=2, zorder=3, label="median")
        m = moments.loc[name]
        ax.scatter(x, mine["v_at_low_pu"], marker="v", s=30, color="#2166ac", zorder=4,
                   label=f"at the feeder's lowest voltage ({clock(d, m['t_low_s'] / 3600)}, {m['v_low_pu']:.4f} pu)")
        ax.scatter(x, mine["v_at_high_pu"], marker="^", s=30, color="#b2182b", zorder=4,
                   label=f"at the feeder's highest voltage ({clock(d, m['t_high_s'] / 3600)}, "
                         f"{m['v_high_pu']:.4f} pu)")
        draw_limits(ax, *d.limits(name))
        ax.set_xlim(left=0)
        ax.set_xlabel("distance of the prosumer's bus from the feeder's source along the lines (km)")
        ax.set_ylabel("service voltage (pu)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best", ncol=2)
    return fig


def figure_feeder_voltage(d: RunData) -> Figure:
    """Per feeder over the run: the range of its load service voltages (min and max over every load, from the
    power flow) and, when the run records it (``feeder_steps.v_source_pu``), the voltage at its source."""
    fs = d.frames["feeder_steps"]
    names = sorted(fs["feeder"].dropna().unique()) if len(fs) else []
    fig, axes = feeder_rows(names, 3.2, "no power flows recorded in this run", "Feeder voltage over the run")
    if not names:
        return fig
    has_source = "v_source_pu" in fs and pd.to_numeric(fs["v_source_pu"], errors="coerce").notna().any()
    for ax, name in zip(axes, names, strict=True):
        mine = fs[fs["feeder"] == name].sort_values("time", kind="stable")
        t = hours(mine["time"])
        lo_v, hi_v = (pd.to_numeric(mine[c], errors="coerce").to_numpy(dtype=float) for c in ("v_min_pu", "v_max_pu"))
        ax.fill_between(t, lo_v, hi_v, step="post", color="#92c5de", alpha=0.6, label="range of every load's voltage")
        ax.step(t, lo_v, where="post", color="#2166ac", lw=1.0, label="lowest load voltage")
        ax.step(t, hi_v, where="post", color="#b2182b", lw=1.0, label="highest load voltage")
        if has_source:
            src = pd.to_numeric(mine["v_source_pu"], errors="coerce").to_numpy(dtype=float)
            ax.step(t, src, where="post", color="k", lw=2.0, label="source (substation) voltage")
            ax.set_title(f"Feeder {name}: source voltage and the range of its load voltages")
        else:
            ax.set_title(f"Feeder {name}: range of its load voltages (source voltage not recorded in this run: "
                         "fixed by the feeder model)")
        draw_limits(ax, *d.limits(name))
        ax.set_ylabel("voltage (pu)")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(d.time_label)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, [label.split(" limit ")[0] + " limit" if " limit " in label else label for label in labels],
               loc="outside lower center", ncol=6, fontsize=8)
    return fig


def busiest_slot(l1: pd.DataFrame) -> int:
    """The Layer I slot with the most traded energy (the earliest on a tie)."""
    per_slot = l1.groupby("slot")["energy_kwh"].sum()
    return int(per_slot.index[np.argmax(per_slot.to_numpy())])


def figure_trade_network(d: RunData) -> Figure:
    """The Layer I trades of the busiest slot: prosumers on a circle, arrows seller -> buyer, width ~ kWh."""
    fig, (ax,) = new_figure(10, 10)
    trades = d.frames["trades"]
    l1 = trades[trades["layer"] == 1]
    if l1.empty:
        say_empty(ax, "no trades in this run")
        ax.set_title("Layer I trade network")
        return fig
    slot = busiest_slot(l1)
    edges = l1[l1["slot"] == slot].groupby(["seller", "buyer"])["energy_kwh"].sum()
    nodes = network_nodes(d, l1[l1["slot"] == slot])
    angle = 2 * np.pi * np.arange(len(nodes)) / len(nodes)
    pos = dict(zip(nodes, zip(np.cos(angle), np.sin(angle), strict=True), strict=True))
    draw_edges(ax, edges, pos)
    draw_nodes(ax, edges, pos, label_all=len(nodes) <= 24)
    label_feeders(ax, d, pos)
    start = hours(slot * L1_PERIOD_S)
    ax.set_title(f"Layer I trades of slot {slot} ({clock(d, start)}-{clock(d, start + L1_PERIOD_S / 3600)}), "
                 f"the busiest: {edges.sum():.2f} kWh in {len(edges)} seller-buyer pairs")
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig


def clock(d: RunData, h: float) -> str:
    total = (d.start_hour + h) % 24 if d.start else h
    return f"{int(total):02d}:{int(round((total % 1) * 60)) % 60:02d}" if d.start else f"{h:g} h"


def network_nodes(d: RunData, slot_trades: pd.DataFrame) -> list[str]:
    """Every prosumer of the feeders that traded in the slot, grouped by feeder; traders always included."""
    traders = set(slot_trades["buyer"]) | set(slot_trades["seller"])
    steps = d.frames["prosumer_steps"]
    feeders = {m.removeprefix("vpp_") for m in slot_trades["market"]}
    members = steps.loc[steps["feeder"].isin(feeders), ["feeder", "prosumer"]].drop_duplicates()
    ordered = list(members.sort_values(["feeder", "prosumer"])["prosumer"])
    return ordered + sorted(traders - set(ordered))


def label_feeders(ax, d: RunData, pos: dict) -> None:
    """Name each feeder's arc of the circle, at the mean position of its prosumers."""
    feeder_of = d.frames["prosumer_steps"].groupby("prosumer")["feeder"].first()
    for feeder, members in feeder_of[feeder_of.index.isin(list(pos))].groupby(feeder_of):
        x, y = np.mean([pos[m] for m in members.index], axis=0)
        r = math.hypot(x, y) or 1.0
        ax.text(1.28 * x / r, 1.28 * y / r, f"feeder {feeder}", fontsize=11, fontweight="bold", ha="center",
                va="center", color="#444")


def draw_edges(ax, edges: pd.Series, pos: dict) -> None:
    top = float(edges.max())
    for (seller, buyer), e in edges.items():
        ax.annotate("", xy=pos[buyer], xytext=pos[seller], zorder=1,
                    arrowprops={"arrowstyle": "-|>", "lw": 0.6 + 7.0 * e / top, "color": "tab:purple",
                                "alpha": 0.65, "shrinkA": 7, "shrinkB": 7, "mutation_scale": 12})
    for frac in (1.0, 0.5, 0.1):
        ax.plot([], [], color="tab:purple", alpha=0.65, lw=0.6 + 7.0 * frac, label=f"{frac * top:.3g} kWh")


def draw_nodes(ax, edges: pd.Series, pos: dict, *, label_all: bool) -> None:
    sold = edges.groupby(level="seller").sum()
    bought = edges.groupby(level="buyer").sum()
    roles = {"seller": ("tab:green", []), "buyer": ("tab:red", []), "buyer and seller": ("tab:olive", []),
             "not trading": ("lightgrey", [])}
    for name in pos:
        s, b = sold.get(name, 0.0) > 0, bought.get(name, 0.0) > 0
        role = "buyer and seller" if s and b else "seller" if s else "buyer" if b else "not trading"
        roles[role][1].append(name)
    for role, (colour, names) in roles.items():
        if names:
            xy = np.array([pos[n] for n in names])
            ax.scatter(xy[:, 0], xy[:, 1], s=140, color=colour, edgecolor="k", zorder=2, label=role)
        if role == "not trading" and not label_all:
            continue
        for n in names:
            x, y = pos[n]
            ha = "left" if x > 0.2 else "right" if x < -0.2 else "center"
            ax.text(1.08 * x, 1.08 * y, n, fontsize=7, ha=ha, va="center")
    ax.legend(fontsize=8, loc="lower left", title="nodes / arrow width = energy sold", title_fontsize=8)


COST_BARS_MAX = 60  # prosumers up to which the cost of each is a bar; beyond, the distribution per mode


def figure_costs(d: RunData) -> Figure:
    """Total cost of each prosumer: grouped bars per mode with a comparison, else this run's bars; with many
    prosumers the distribution of their costs per mode (box: quartiles, whiskers: 5-95 %, diamond: mean)."""
    costs = pd.DataFrame(d.mode_costs) if d.mode_costs else pd.DataFrame()
    if costs.empty and len(d.per_prosumer) and "total_cost" in d.per_prosumer:
        costs = d.per_prosumer.set_index("prosumer")[["total_cost"]].rename(columns={"total_cost": d.mode})
    n = len(costs)
    fig, (ax,) = new_figure(min(18.0, max(9.0, 2.0 + 0.3 * n)) if n <= COST_BARS_MAX else 10.0, 5.5)
    which = "under each mode" if d.mode_costs else "in this run"
    ax.set_title(f"Total cost of each prosumer {which} (negative = net income)")
    if costs.empty:
        say_empty(ax, "no prosumer costs in this run")
        return fig
    costs = costs.sort_index()
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("total cost ($)")
    ax.grid(axis="y", alpha=0.3)
    if n > COST_BARS_MAX:
        values = [costs[m].dropna().to_numpy(dtype=float) for m in costs.columns]
        ax.boxplot(values, tick_labels=list(costs.columns), whis=(5, 95), showmeans=True, showfliers=False,
                   meanprops={"marker": "D", "markerfacecolor": "k", "markeredgecolor": "k"})
        ax.set_title(f"Total cost of the {n} prosumers {which}: box = quartiles, whiskers = 5-95 %, "
                     "diamond = mean (negative = net income)")
        return fig
    width = 0.8 / costs.shape[1]
    x = np.arange(n)
    for i, mode in enumerate(costs.columns):
        ax.bar(x - 0.4 + (i + 0.5) * width, costs[mode].to_numpy(dtype=float), width, label=mode)
    ax.set_xticks(x)
    ax.set_xticklabels(costs.index, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel("prosumer")
    ax.legend(fontsize=8, title="mode", ncol=min(5, costs.shape[1]))
    return fig


BILLS_PER_PANEL = 30   # prosumers per feeder panel when every prosumer is shown
BILLS_ALL_MAX = 60     # prosumers up to which every one is shown; beyond, the extremes and the mean
BILLS_EACH = 15        # how many of each extreme


def topdown_costs(d: RunData) -> pd.Series | None:
    """Each prosumer's total cost under top-down when the run has a top-down reference beside its own mode."""
    return d.bills["topdown"].sum(axis=1) if d.mode != "topdown" and "topdown" in d.bills else None


def bill_panels(d: RunData) -> tuple[list[tuple[str, list[str]]], str]:
    """(panel title, prosumers) per panel of the bills figure: one panel per feeder (at most
    ``BILLS_PER_PANEL`` prosumers each) up to ``BILLS_ALL_MAX`` prosumers, else one panel with the
    ``BILLS_EACH`` who saved least and most against top-down (or the cheapest and dearest) and their mean."""
    run = d.bills[d.mode]
    feeder = d.per_prosumer.set_index("prosumer")["feeder"].reindex(run.index)
    if len(run) <= BILLS_ALL_MAX:
        panels = []
        for name, members in feeder.groupby(feeder, sort=True):
            chosen = sorted(members.index)
            for k in range(0, len(chosen), BILLS_PER_PANEL):
                part = f" ({k // BILLS_PER_PANEL + 1})" if len(chosen) > BILLS_PER_PANEL else ""
                panels.append((f"feeder {name}{part}", chosen[k:k + BILLS_PER_PANEL]))
        return panels, f"all {len(run)} prosumers"
    chosen, what = rd.bill_selection(run.sum(axis=1), topdown_costs(d), keep=BILLS_ALL_MAX, each=BILLS_EACH)
    return [(what, chosen)], what


def figure_bills(d: RunData) -> Figure:
    """Each prosumer's bill by item, stacked (costs up, income down), in the run's mode and under top-down side
    by side, with the net (its total_cost) marked."""
    if not d.bills or d.mode not in d.bills or d.bills[d.mode].empty:
        fig, (ax,) = new_figure(12, 4)
        say_empty(ax, "no prosumer bills in this run")
        ax.set_title("Each prosumer's bill by item")
        return fig
    panels, _ = bill_panels(d)
    modes = list(d.bills)  # the run's mode, then top-down when known
    items = [k for k, _, _ in rd.BILL_ITEMS if any((b[k].abs() > 1e-9).any() for b in d.bills.values())]
    with_mean = len(d.bills[d.mode]) > BILLS_ALL_MAX
    widest = max(len(names) for _, names in panels) + int(with_mean)
    width = min(20.0, max(12.0, 2.5 + 0.42 * widest * len(modes)))
    fig, axes = new_figure(width, 0.6 + 4.6 * len(panels), rows=len(panels), sharex=False)
    for ax, (title, names) in zip(axes, panels, strict=True):
        draw_bills(ax, d, names, modes, items, with_mean=with_mean)
        ax.set_title(f"Each prosumer's bill by item, {title}: "
                     + (f"left bar {d.mode}, right bar (hatched) top-down" if len(modes) > 1 else d.mode))
    handles = [Patch(color=rd.BILL_COLOUR[k], label=rd.BILL_LABEL[k]) for k in items]
    handles.append(Line2D([], [], marker="D", color="k", ls="", label="net = total_cost"))
    if len(modes) > 1:
        handles.append(Patch(facecolor="white", edgecolor="#444", hatch="///", label="top-down"))
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8)
    return fig


def draw_bills(ax, d: RunData, names: list[str], modes: list[str], items: list[str], *, with_mean: bool) -> None:
    labels = (["mean of all"] if with_mean else []) + names
    x = np.arange(len(labels), dtype=float)
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        bills = d.bills[mode]
        rows = bills.reindex(names).fillna(0.0)
        if with_mean:
            rows = pd.concat([bills.mean().to_frame("mean of all").T, rows])
        pos = x - 0.4 + (i + 0.5) * width
        up, down = np.zeros(len(rows)), np.zeros(len(rows))
        for item in items:
            v = rows[item].to_numpy(dtype=float)
            base = np.where(v >= 0, up, down)
            ax.bar(pos, v, width * 0.95, bottom=base, color=rd.BILL_COLOUR[item], hatch="///" if i else None,
                   edgecolor="#444" if i else "none", linewidth=0)
            up, down = up + np.maximum(v, 0), down + np.minimum(v, 0)
        ax.scatter(pos, rows[items].sum(axis=1).to_numpy(dtype=float), marker="D", s=22, color="k", zorder=3)
    if with_mean:
        ax.axvline(0.5, color="#444", lw=1.0)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel("$ (+ = paid, - = received)")
    ax.use_sticky_edges = False  # stacked zero-height bars would pin the limits to the tallest stack
    ax.margins(y=0.08)
    ax.grid(axis="y", alpha=0.3)


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: file name, theme (a key of :data:`THEMES`), heading, drawing function, what
    it shows and how to read it (HTML; ``{...}`` fields filled from :func:`caption_fields`), and optionally the
    function giving its data, written beside the PNG as ``figures/<name>.csv``."""

    name: str
    theme: str
    caption: str
    draw: Callable[[RunData], Figure]
    description: str
    data: Callable[[RunData], pd.DataFrame] | None = None


def bills_data(d: RunData) -> pd.DataFrame:
    """The bills of :func:`figure_bills` in long form: mode, prosumer, item, label, cost ($, + = paid)."""
    parts = [b.rename_axis("prosumer").reset_index().melt(id_vars="prosumer", var_name="item", value_name="cost")
             .assign(mode=mode) for mode, b in d.bills.items()]
    if not parts:
        return pd.DataFrame(columns=["mode", "prosumer", "item", "label", "cost"])
    out = pd.concat(parts, ignore_index=True)
    out["label"] = out["item"].map(rd.BILL_LABEL)
    return out[["mode", "prosumer", "item", "label", "cost"]]


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("prosumer_bills", "money", "Each prosumer's bill by item", figure_bills,
               "Every item of each prosumer's bill in $, stacked: costs above zero, income below. Items: the utility "
               "(energy bought, export credit), the P2P market (energy bought and sold, network fees), the VPP "
               "(its compensation for energy delivered on request; its revenue share, split into what the VPP's "
               "income was made of: ancillary payments, penalties, Layer III trades, the compensation it paid its "
               "members, its community battery's energy, less the platform fee; the guarantee transfer), and the "
               "value of the stored energy the batteries drew over the run (not a cash flow: what refilling it "
               "costs). The diamond is the net, the prosumer's <code>total_cost</code>. {bills_bars}. "
               "{bills_selection}.", bills_data),
    FigureSpec("prosumer_costs", "money", "Total cost of each prosumer per mode", figure_costs,
               "Each prosumer's <code>total_cost</code> (cash paid net of cash received minus the value of the "
               "energy its battery gained) in this run, or in every mode of the comparison given with "
               "<code>--compare</code>; with many prosumers, the distribution per mode."),
    FigureSpec("p2p_prices", "markets", "P2P price against the retail tariff and the buy-back rate",
               figure_p2p_prices,
               "Per feeder market (its Layer I mechanism in brackets), each 30-minute slot: the energy-weighted mean "
               "price of its trades (marker size ~ energy; the bar spans the lowest to the highest trade price), "
               "the energy traded (grey bars, right axis), and the utility's retail tariff (solid, time of use "
               "when the tariff has it) and buy-back rate (dashed): a trade between them leaves buyer and seller "
               "better off than the utility would.",
               lambda d: rd.p2p_price_slots(d.frames["trades"])),
    FigureSpec("prices", "markets", "Prices per layer", figure_prices,
               "Top: every Layer I (feeder P2P) and Layer III (inter-VPP) trade at the middle of its slot, marker "
               "area ~ energy, with the tariff. Bottom: the ancillary-service clearing price of each product at "
               "each 15-minute clearing ($/MW-h)."),
    FigureSpec("ancillary", "markets", "Ancillary services: award against delivery", figure_ancillary,
               "Per VPP (rows; all VPPs summed when there are more than " + str(MAX_VPP_ROWS) + ") and product "
               "(columns): the capacity offered (dotted) and awarded (blue) at each 15-minute clearing; every 5 "
               "minutes what the ISO's regulation signal or reserve deployment asked of the award (black) and what "
               "the metered feeder delivered in the product's direction (green); red crosses mark the intervals "
               "penalised (size ~ penalty). The heading of each panel gives the totals; accuracy = 1 - "
               "sum |delivered - asked| / sum asked, the ISO's performance score over the run.",
               lambda d: rd.award_summary(d.frames["ancillary"]).reset_index()),
    FigureSpec("trade_network", "markets", "Trade network of the busiest Layer I slot", figure_trade_network,
               "The prosumers of the feeders that traded in the slot with the most P2P energy, on a circle by "
               "feeder; arrows from seller to buyer, width ~ energy."),
    FigureSpec("import_export", "energy", "Community import and export", figure_grid,
               "Per feeder: the prosumers' summed net export (+ = into the network) and the power at the feeder "
               "head (+ = the substation supplies the feeder), every 5 minutes."),
    FigureSpec("state_of_charge", "energy", "Battery state of charge", figure_soc,
               "Every prosumer battery's stored energy (thin lines, left axis) and their total (right axis)."),
    FigureSpec("voltage_profile", "grid", "Voltage along the feeder", figure_voltage_profile,
               "Per feeder, each prosumer's service voltage against the distance of its bus from the feeder's "
               "source along the lines (<code>results/placement.csv</code>, <code>distance_km</code>): its range "
               "over the run (grey), its median (black dash), and its voltage at the moment the feeder had its "
               "lowest (blue) and its highest (red) prosumer voltage, against the feeder's configured limits "
               "(dashed).", lambda d: rd.voltage_profile(d.frames["voltages"], d.frames["placement"])[0]),
    FigureSpec("voltages", "grid", "Prosumer voltages over the run", figure_voltages,
               "Heatmap of each prosumer's service voltage (rows, nearest the source first when the distance is "
               "recorded) every 5 minutes, centred on 1.0 pu (red above, blue below); heavy black contours where "
               "it crosses the feeder's limits (lines on the colour bar)."),
    FigureSpec("feeder_voltage", "grid", "Feeder voltage range and source voltage", figure_feeder_voltage,
               "Per feeder, every 5 minutes: the lowest and highest voltage of all its loads (prosumers and "
               "background load) from the power flow, and the voltage at its source when the run records it "
               "(<code>feeder_steps.v_source_pu</code>, set by a transmission federate), against its limits."),
)


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------------
# HTML


def number(v: float) -> str:
    """4 significant digits; round-off residue (|v| < 1e-9) shown as 0."""
    return "0" if abs(v) < 1e-9 else f"{v:.4g}"


def value_text(v) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return html.escape(str(v))
    return "-" if isinstance(v, float) and not math.isfinite(v) else number(float(v))


def kpi_table(kpis: dict) -> str:
    """The key figures grouped by theme, each with its meaning (unknown keys under "other")."""
    if not kpis:
        return '<p class="note">no kpis.json in this run folder</p>'
    parts = []
    for theme, blurb in [*THEMES.items(), ("other", "keys this report does not know")]:
        keys = sorted(k for k in kpis if kpi_theme(k) == theme)
        if not keys:
            continue
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{value_text(kpis[k])}</td>"
                       f"<td>{html.escape(kpi_meaning(k) or '(no definition)')}</td></tr>" for k in keys)
        parts.append(f"<h3 id='kpi-{theme}'>{theme} <small>{html.escape(blurb)}</small></h3>"
                     "<table class='dataframe kpis'><colgroup><col class='key'><col class='value'><col></colgroup>"
                     f"<thead><tr><th>key</th><th>value</th><th>meaning</th></tr></thead><tbody>{rows}</tbody>"
                     "</table>")
    return "\n".join(parts)


# keys with a feeder's name at the end: the meaning of their stem, for that feeder
PER_FEEDER = {"self_sufficiency_pct_": "self_sufficiency_pct", "self_consumption_pct_": "self_consumption_pct"}


def kpi_theme(key: str) -> str:
    """The theme (a key of :data:`THEMES`) a kpis.json key is shown under; "other" for an unknown key."""
    if key in KPI_THEME:
        return KPI_THEME[key]
    if key.startswith("mechanism_"):
        return "markets"
    for prefix, stem in PER_FEEDER.items():
        if key.startswith(prefix):
            return KPI_THEME[stem]
    return "other"


def kpi_meaning(key: str) -> str:
    if key in KPI_DEFINITIONS:
        return KPI_DEFINITIONS[key]
    if key.startswith("mechanism_"):
        return f"the Layer I market feeder {key.removeprefix('mechanism_')} ran (none in the modes without one)"
    for prefix, stem in PER_FEEDER.items():
        if key.startswith(prefix):
            return f"for feeder {key.removeprefix(prefix)}: {KPI_DEFINITIONS[stem].split(', all feeders')[0]}"
    return ""


def frame_html(df: pd.DataFrame | None, empty: str, **kwargs) -> str:
    if df is None or df.empty:
        return f'<p class="note">{html.escape(empty)}</p>'
    table = df.to_html(float_format=number, na_rep="-", **kwargs)
    return f'<div class="scroll">{table}</div>'


def feeders_table(d: RunData) -> str:
    """One row per feeder: its model, prosumers, Layer I market, the run's mode, its limits and source."""
    names = sorted(set(d.feeders) | set(d.frames["feeder_steps"]["feeder"].dropna())
                   | set(d.frames["prosumer_steps"]["feeder"].dropna()))
    if not names:
        return '<p class="note">no feeders recorded in this run</p>'
    pl = d.frames["placement"]
    placed = pl[pl["prosumer"].fillna("").astype(str) != ""].groupby("feeder")["prosumer"].nunique() if len(pl) \
        else pd.Series(dtype=int)
    fs = d.frames["feeder_steps"]
    source = "v_source_pu" in fs and pd.to_numeric(fs["v_source_pu"], errors="coerce").notna().any()
    rows = []
    for name in names:
        cfg = d.feeders.get(name, {})
        lo, hi = d.limits(name)
        rows.append({"feeder": name, "OpenDSS master": Path(str(cfg.get("master", "?"))).name,
                     "prosumers": int(placed.get(name, 0)), "Layer I market": d.kpis.get(f"mechanism_{name}", "?"),
                     "mode": d.mode, "voltage limits (pu)": f"{lo:g} - {hi:g}",
                     "source voltage": "from the transmission federate" if source else "fixed (feeder model)"})
    return frame_html(pd.DataFrame(rows), "", index=False, classes="feeders")


TABLE_ROWS_MAX = 60   # prosumers up to which the per-prosumer table lists every one
TABLE_EACH = 20       # beyond: the ones who saved least and most (or the cheapest and dearest)
# in results/prosumer_kpis.csv, left out of the page: the stored energy is its change, the local energy its shares
SKIP_COLUMNS = ("battery_start_kwh", "battery_end_kwh", "local_supply_kwh", "pv_used_kwh")


# short headers for the per-prosumer table (the group above says $ or kWh)
SHORT = {"activation_compensation_amount": "activation", "revenue_share_amount": "VPP share",
         "stored_energy_value": "own battery", "community_battery_stored_value": "community",
         "stored_energy_change_kwh": "stored change", "p2p_purchase_amount": "P2P bought",
         "p2p_sale_amount": "P2P sold",
         "p2p_bought_kwh": "P2P bought", "p2p_sold_kwh": "P2P sold", "network_fee_amount": "network fee",
         "unmet_flexible_kwh": "unmet flexible", "self_sufficiency_pct": "sufficiency",
         "self_consumption_pct": "consumption", "distance_km": "km from source", "v_min_pu": "v min pu",
         "v_max_pu": "v max pu"}


def header(column: str) -> str:
    """A column's header under its group (which gives the unit): ``utility_export_amount`` -> ``utility export``."""
    for suffix in ("_amount", "_kwh", "_pct"):
        column = column.removesuffix(suffix)
    return column.replace("_", " ")


def cell_format(column: str) -> Callable[[float], str]:
    """Digits by unit: $ to the cent, kWh and % to one decimal, km to the metre, pu to 4 decimals."""
    if column.endswith("_pu"):
        digits = 4
    elif column.endswith("_km"):
        digits = 3
    elif column.endswith(("_kwh", "_pct")):
        digits = 1
    else:
        digits = 2

    def fmt(v: float) -> str:
        if not np.isfinite(v):
            return "-"
        text = f"{v:.{digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text  # no -0.00
    return fmt


def table_group(column: str) -> str:
    if column in ("prosumer", "feeder", "distance_km", "v_min_pu", "v_max_pu"):
        return "site"
    if column.endswith("_amount"):
        return "ledger ($ received, - = paid)"
    if column in ("total_cost", "cash_cost"):
        return "cost ($, + = paid)"
    if column.endswith("_value"):
        return "stored energy value ($)"
    if column.endswith("_pct"):
        return "self- (%)"
    return "energy (kWh)" if column.endswith("_kwh") else "other"


def prosumer_table(d: RunData) -> tuple[pd.DataFrame, str]:
    """The per-prosumer table: prosumer_kpis with each one's site (distance from the source, voltage range),
    columns grouped under a two-level header; with many prosumers only the extremes (the note says which)."""
    per = d.per_prosumer
    if per.empty or "prosumer" not in per:
        return pd.DataFrame(), ""
    df = per.set_index("prosumer")
    v = d.frames["voltages"]
    site = pd.DataFrame({"distance_km": site_distances(d)})
    if len(v):
        volts = pd.to_numeric(v["v_pu"], errors="coerce").groupby(v["prosumer"])
        site = site.join(pd.DataFrame({"v_min_pu": volts.min(), "v_max_pu": volts.max()}), how="outer")
    df = df[["feeder"]].join(site).join(df.drop(columns=["feeder"]))
    df = df[[c for c in df.columns if c not in SKIP_COLUMNS]]
    note = f"all {len(df)} prosumers"
    if len(df) > TABLE_ROWS_MAX:
        chosen, note = rd.bill_selection(df["total_cost"], topdown_costs(d), keep=TABLE_ROWS_MAX, each=TABLE_EACH)
        df = df.loc[sorted(chosen)]
    numeric = df.select_dtypes("number")
    df = df.drop(columns=[c for c in numeric if (numeric[c].fillna(0).abs() < 5e-3).all() and c != "total_cost"])
    df = df.rename_axis("prosumer").reset_index()
    df = df.apply(lambda col: col.map(cell_format(str(col.name))) if pd.api.types.is_numeric_dtype(col) else col)
    df.columns = pd.MultiIndex.from_tuples([(table_group(c), SHORT.get(c, header(c)))
                                            for c in df.columns])
    order = ["site", "cost ($, + = paid)", "ledger ($ received, - = paid)", "stored energy value ($)",
             "energy (kWh)", "self- (%)", "other"]
    df = df[sorted(df.columns, key=lambda c: order.index(c[0]))]
    return df, note


def definitions_html(kpis: dict, with_comparison: bool) -> str:
    """The two shares spelled out; every other kpis.json key in one line (beside its value when present)."""
    parts = ["<p><b>self-sufficiency</b> = locally produced energy consumed / demand; <b>self-consumption</b> "
             "= locally produced energy consumed / production, from the metered 5-minute flows whatever was "
             "traded. Each step, demand is met by local PV first, then batteries, then from outside; a "
             "battery's energy keeps the origin it was charged with (its energy at the start has the mix of "
             "what it charged during the run). Local means inside the feeder's community for the community "
             "figures and behind the meter for the prosumer figures. <b>total_cost</b> = cash paid net of cash "
             "received - the value of the energy the batteries gained (a drained battery costs its refill at "
             "the run's mean retail price).</p>"]
    if kpis:
        parts.append("<p>Each key of kpis.json is defined in the <i>meaning</i> column above.</p>")
    else:
        parts.append(definition_list(KPI_DEFINITIONS))
    if with_comparison:
        parts.append("<p>Mode comparison (added by <code>harmony compare</code>):</p>")
        parts.append(definition_list(COMPARISON_DEFINITIONS))
    return "\n".join(parts)


def definition_list(items: dict[str, str]) -> str:
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items.items()) \
        + "</dl>"


def caption_fields(d: RunData) -> dict[str, str]:
    note = html.escape(d.bills_note or "no top-down reference")
    bars = f"Left bar: this run ({html.escape(d.mode)}); right bar, hatched: {note}" if len(d.bills) > 1 \
        else f"One bar per prosumer: this run ({html.escape(d.mode)}); {note}"
    fields = {"bills_bars": bars, "bills_selection": ""}
    if d.bills and d.mode in d.bills:
        fields["bills_selection"] = "Shown: " + html.escape(bill_panels(d)[1])
    return fields


def render_html(d: RunData, figures: list[tuple[FigureSpec, bytes]], compare: bool) -> str:
    k = d.kpis
    title = f"harmony report: {d.run_dir.name}"
    facts = f"mode {d.mode}, {k.get('prosumers', '?')} prosumers"
    markets = [f"{key.removeprefix('mechanism_')} {v}" for key, v in sorted(k.items()) if key.startswith("mechanism_")]
    if markets:
        facts += ", Layer I market per feeder: " + ", ".join(markets)
    if d.start:
        facts += f", start {d.start:%Y-%m-%d %H:%M}, {run_end_h(d):g} h"
    themes = [t for t in THEMES if any(spec.theme == t for spec, _ in figures)]
    nav = " ".join(f"<a href='#{t}'>{t}</a>" for t in ["run", "key-figures", *themes, "prosumers"])
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(facts)}. Run folder: <code>{html.escape(str(d.run_dir))}</code></p>",
             f"<nav>{nav}</nav>",
             "<h2 id='run'>What ran</h2>", feeders_table(d),
             "<h2 id='key-figures'>Key figures</h2>", kpi_table(k),
             "<h2>KPI definitions</h2>", definitions_html(k, compare)]
    if compare:
        parts += ["<h2>Mode comparison</h2>",
                  frame_html(d.comparison, "no comparison.csv in the compare folder")]
    fields = caption_fields(d)
    for theme in themes:
        parts.append(f"<h2 id='{theme}'>{theme.capitalize()}: {html.escape(THEMES[theme])}</h2>")
        for spec, png in (f for f in figures if f[0].theme == theme):
            data = base64.b64encode(png).decode("ascii")
            csv = f", data <code>figures/{spec.name}.csv</code>" if spec.data else ""
            parts.append(f"<h3>{html.escape(spec.caption)}</h3><figure><img src='data:image/png;base64,{data}' "
                         f"alt='{html.escape(spec.caption)}'><figcaption>{spec.description.format(**fields)} "
                         f"(<code>figures/{spec.name}.png</code>{csv})</figcaption></figure>")
    table, note = prosumer_table(d)
    parts += ["<h2 id='prosumers'>Per-prosumer KPIs</h2>",
              f"<p>{html.escape(note.capitalize()) + '. ' if note else ''}Cost: what the prosumer paid net of "
              "everything it received (<code>cash_cost</code>), and that minus the value of the energy its battery "
              "and its share of the community battery gained (<code>total_cost</code>); ledger: $ received by item "
              "(negative = paid); site: the distance of its bus from the feeder's source and its voltage range over "
              "the run. Columns that round to 0 for every prosumer are left out; every prosumer and column: "
              "<code>results/prosumer_kpis.csv</code>.</p>",
              frame_html(table, "no prosumer KPIs in this run", classes="wide", index=False), "</body></html>"]
    return "\n".join(parts)


def write_report(run_dir: Path, *, compare_dir: Path | None = None) -> Path:
    """Write ``run_dir/report.html`` (self-contained), ``run_dir/figures/*.png`` and the figures' data
    ``run_dir/figures/*.csv``; return the HTML path.

    ``compare_dir``: the output folder of ``harmony compare`` (one sub-folder per mode, each with
    ``results/prosumer_kpis.csv``, and ``comparison.csv``); adds per-mode cost bars, the comparison table and
    the top-down bills from its top-down run.
    Raises ConfigError when ``run_dir`` has no ``results/`` folder or ``compare_dir`` does not exist.
    """
    run_dir = Path(run_dir).resolve()
    data = load_run(run_dir, Path(compare_dir).resolve() if compare_dir is not None else None)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    drawn = []
    for i, spec in enumerate(FIGURES, start=1):
        started = time.monotonic()
        png = png_bytes(spec.draw(data))
        (fig_dir / f"{spec.name}.png").write_bytes(png)
        if spec.data is not None:
            spec.data(data).to_csv(fig_dir / f"{spec.name}.csv", index=False)
        drawn.append((spec, png))
        log.info("report: figure %d/%d %s (%.1f s)", i, len(FIGURES), spec.name, time.monotonic() - started)
    path = run_dir / "report.html"
    path.write_text(render_html(data, drawn, compare_dir is not None), encoding="utf-8")
    log.info("report: wrote %s", path)
    return path
