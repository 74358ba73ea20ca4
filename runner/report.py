"""``harmony report``: one self-contained HTML page of a run's figures and tables.

:func:`write_report` reads ``RUN/results/*.csv`` (columns declared in ``federates/common/tables.py``),
``RUN/results/prosumer_kpis.csv``, ``RUN/kpis.json`` and, for the tariff lines and the clock, the first
``RUN/federates/prosumers_*.json``. It writes ``RUN/figures/<name>.png`` and ``RUN/report.html``, which embeds
the same PNGs as base64 data URIs with inline CSS: no external resources, so the file can be mailed or
archived alone.

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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from pydantic import ValidationError

from federates.common.config import MODES
from federates.common.errors import ConfigError
from federates.common.tables import TABLES
from federates.common.timebase import L1_PERIOD_S, L2_PERIOD_S, L3_PERIOD_S, TICK_S
from federates.prosumer.devices import TariffConfig

log = logging.getLogger(__name__)

DPI = 100
V_LOW_PU, V_HIGH_PU = 0.95, 1.05
READ = ("trades", "ancillary", "prosumer_steps", "feeder_steps", "voltages")

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

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1240px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
table.dataframe { border-collapse: collapse; font-size: .85em; margin: 1em 0; }
table.dataframe th, table.dataframe td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
table.dataframe th { background: #f4f4f4; } table.dataframe tr:nth-child(even) td { background: #fafafa; }
table.kpis td:first-child, table.kpis td:last-child { text-align: left; }
dl dt { font-weight: 600; margin-top: .4em; } dl dd { margin-left: 1.5em; }
.note { color: #666; font-style: italic; } .scroll { overflow-x: auto; }
"""


@dataclass
class RunData:
    """What the figures need from one run folder."""

    run_dir: Path
    frames: dict[str, pd.DataFrame]
    kpis: dict
    per_prosumer: pd.DataFrame
    tariff: TariffConfig | None = None
    start: datetime | None = None
    duration_s: float | None = None
    mode_costs: dict[str, pd.Series] = field(default_factory=dict)
    comparison: pd.DataFrame | None = None

    @property
    def start_hour(self) -> float:
        return self.start.hour + self.start.minute / 60 if self.start else 0.0

    @property
    def time_label(self) -> str:
        since = f" from {self.start:%Y-%m-%d %H:%M}" if self.start else " since the start"
        return f"time (h{since})"


# ----------------------------------------------------------------------------------------------------------
# reading


def read_table(run_dir: Path, table: str) -> pd.DataFrame:
    """``results/<table>.csv`` with its declared columns; an empty frame when missing or empty."""
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
    data = RunData(run_dir, frames, kpis, per, tariff, start, duration)
    if compare_dir is not None:
        if not compare_dir.is_dir():
            raise ConfigError(f"compare folder {compare_dir} not found; give the --out folder of "
                              "`harmony compare`")
        data.mode_costs = read_mode_costs(compare_dir)
        table = compare_dir / "comparison.csv"
        data.comparison = pd.read_csv(table, index_col=0) if table.is_file() else None
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


def figure_grid(d: RunData) -> Figure:
    """Per feeder: prosumers' summed net export (grid_kw) and the feeder-head power."""
    steps, feeder = d.frames["prosumer_steps"], d.frames["feeder_steps"]
    names = sorted(set(steps["feeder"].dropna()) | set(feeder["feeder"].dropna()))
    fig, axes = new_figure(12, 1.0 + 3.0 * max(1, len(names)), rows=max(1, len(names)))
    if not names:
        say_empty(axes[0], "no prosumer or feeder steps in this run")
        axes[0].set_title("Community import/export")
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


def figure_voltages(d: RunData) -> Figure:
    """Heatmap of prosumer-bus voltages (prosumer x time), one panel per feeder, centred on 1.0 pu."""
    v = d.frames["voltages"]
    v = v[pd.to_numeric(v["v_pu"], errors="coerce").notna()]
    names = sorted(v["feeder"].dropna().unique()) if len(v) else []
    heights = [max(2.0, 0.16 * v.loc[v["feeder"] == n, "prosumer"].nunique()) for n in names] or [3.0]
    fig, axes = new_figure(12, 1.5 + sum(heights), rows=len(heights))
    if not names:
        say_empty(axes[0], "no voltages recorded in this run")
        axes[0].set_title("Prosumer-bus voltages")
        return fig
    dev = float(np.nanmax(np.abs(v["v_pu"].to_numpy(dtype=float) - 1.0)))
    half = max(0.06, dev if np.isfinite(dev) else 0.0)
    norm = Normalize(vmin=1.0 - half, vmax=1.0 + half)
    mesh = None
    for ax, name in zip(axes, names, strict=True):
        grid = v[v["feeder"] == name].pivot_table(index="prosumer", columns="time", values="v_pu",
                                                  aggfunc="mean")
        mesh = draw_heatmap(ax, grid, norm)
        ax.set_title(f"Feeder {name}: prosumer-bus voltage (contours at {V_LOW_PU} and {V_HIGH_PU} pu)")
        ax.set_ylabel("prosumer")
    axes[-1].set_xlabel(d.time_label)
    bar = fig.colorbar(mesh, ax=axes, shrink=0.9, label="voltage (pu)")
    for level in (V_LOW_PU, V_HIGH_PU):
        bar.ax.axhline(level, color="k", lw=1.5)
    bar.set_ticks(sorted({round(1.0 - half, 3), V_LOW_PU, 1.0, V_HIGH_PU, round(1.0 + half, 3)}))
    return fig


def draw_heatmap(ax, grid: pd.DataFrame, norm: Normalize):
    t = hours(grid.columns.to_numpy(dtype=float))
    step = float(np.median(np.diff(t))) if len(t) > 1 else TICK_S / 3600
    edges = np.append(t, t[-1] + step)
    values = np.ma.masked_invalid(grid.to_numpy(dtype=float))
    mesh = ax.pcolormesh(edges, np.arange(len(grid) + 1), values, cmap="RdBu_r", norm=norm, shading="flat")
    crossing = [lv for lv in (V_LOW_PU, V_HIGH_PU) if values.min() < lv < values.max()]
    if crossing and values.shape[1] > 1 and values.shape[0] > 1:
        ax.contour(t + step / 2, np.arange(len(grid)) + 0.5, values, levels=crossing, colors="k",
                   linewidths=1.2)
    ax.set_yticks(np.arange(len(grid)) + 0.5)
    ax.set_yticklabels(grid.index, fontsize=6 if len(grid) > 12 else 8)
    ax.invert_yaxis()
    return mesh


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


def figure_costs(d: RunData) -> Figure:
    """Total cost of each prosumer: grouped bars per mode with a comparison, else this run's bars."""
    costs = pd.DataFrame(d.mode_costs) if d.mode_costs else pd.DataFrame()
    if costs.empty and len(d.per_prosumer) and "total_cost" in d.per_prosumer:
        costs = d.per_prosumer.set_index("prosumer")[["total_cost"]].rename(
            columns={"total_cost": str(d.kpis.get("mode", "this run"))})
    n = len(costs)
    fig, (ax,) = new_figure(min(18.0, max(9.0, 2.0 + 0.3 * n)), 5.5)
    which = "under each mode" if d.mode_costs else "in this run"
    ax.set_title(f"Total cost of each prosumer {which} (negative = net income)")
    if costs.empty:
        say_empty(ax, "no prosumer costs in this run")
        return fig
    costs = costs.sort_index()
    width = 0.8 / costs.shape[1]
    x = np.arange(n)
    for i, mode in enumerate(costs.columns):
        ax.bar(x - 0.4 + (i + 0.5) * width, costs[mode].to_numpy(dtype=float), width, label=mode)
    ax.set_xticks(x)
    ax.set_xticklabels(costs.index, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, n - 0.4)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("total cost ($)")
    ax.set_xlabel("prosumer")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, title="mode", ncol=min(5, costs.shape[1]))
    return fig


FIGURES = (
    ("prices", "Prices per layer", figure_prices),
    ("import_export", "Community import and export", figure_grid),
    ("state_of_charge", "Battery state of charge", figure_soc),
    ("voltages", "Feeder voltages", figure_voltages),
    ("trade_network", "Trade network of the busiest Layer I slot", figure_trade_network),
    ("prosumer_costs", "Cost of each prosumer", figure_costs),
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


def kpi_table(kpis: dict) -> str:
    if not kpis:
        return '<p class="note">no kpis.json in this run folder</p>'
    rows = [(k, v, kpi_meaning(k)) for k, v in sorted(kpis.items())]
    df = pd.DataFrame(rows, columns=["kpi", "value", "meaning"])
    return df.to_html(float_format=number, na_rep="-", index=False, classes="kpis")


# keys with a feeder's name at the end: the meaning of their stem, for that feeder
PER_FEEDER = {"self_sufficiency_pct_": "self_sufficiency_pct", "self_consumption_pct_": "self_consumption_pct"}


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


def render_html(d: RunData, figures: list[tuple[str, str, bytes]], compare: bool) -> str:
    k = d.kpis
    title = f"harmony report: {d.run_dir.name}"
    facts = f"mode {k.get('mode', '?')}, {k.get('prosumers', '?')} prosumers"
    markets = [f"{key.removeprefix('mechanism_')} {v}" for key, v in sorted(k.items()) if key.startswith("mechanism_")]
    if markets:
        facts += ", Layer I market per feeder: " + ", ".join(markets)
    if d.start:
        facts += f", start {d.start:%Y-%m-%d %H:%M}, {run_end_h(d):g} h"
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(facts)}. Run folder: <code>{html.escape(str(d.run_dir))}</code></p>",
             "<h2>Key figures</h2>", kpi_table(k), "<h2>KPI definitions</h2>", definitions_html(k, compare)]
    if compare:
        parts += ["<h2>Mode comparison</h2>",
                  frame_html(d.comparison, "no comparison.csv in the compare folder")]
    for name, caption, png in figures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{html.escape(caption)}</h2><figure><img src='data:image/png;base64,{data}' "
                     f"alt='{html.escape(caption)}'><figcaption>figures/{name}.png</figcaption></figure>")
    parts += ["<h2>Per-prosumer KPIs</h2>",
              "<p>Amounts are $ received (negative = paid) by ledger item; cash_cost is what the prosumer "
              "paid net of everything it received, total_cost = cash_cost - stored_energy_value; energies in "
              "kWh.</p>",
              frame_html(d.per_prosumer, "no prosumer KPIs in this run", index=False), "</body></html>"]
    return "\n".join(parts)


def write_report(run_dir: Path, *, compare_dir: Path | None = None) -> Path:
    """Write ``run_dir/report.html`` (self-contained) and ``run_dir/figures/*.png``; return the HTML path.

    ``compare_dir``: the output folder of ``harmony compare`` (one sub-folder per mode, each with
    ``results/prosumer_kpis.csv``, and ``comparison.csv``); adds per-mode cost bars and the comparison table.
    Raises ConfigError when ``run_dir`` has no ``results/`` folder or ``compare_dir`` does not exist.
    """
    run_dir = Path(run_dir).resolve()
    data = load_run(run_dir, Path(compare_dir).resolve() if compare_dir is not None else None)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    drawn = []
    for i, (name, caption, draw) in enumerate(FIGURES, start=1):
        started = time.monotonic()
        png = png_bytes(draw(data))
        (fig_dir / f"{name}.png").write_bytes(png)
        drawn.append((name, caption, png))
        log.info("report: figure %d/%d %s (%.1f s)", i, len(FIGURES), name, time.monotonic() - started)
    path = run_dir / "report.html"
    path.write_text(render_html(data, drawn, compare_dir is not None), encoding="utf-8")
    log.info("report: wrote %s", path)
    return path
