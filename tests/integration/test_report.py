"""``runner.report.write_report`` on small synthetic run folders (seeded), and in a headless browser.

The synthetic run has 2 feeders x 3 prosumers over 2 hours of 5-minute ticks, written with the columns
declared in ``federates/common/tables.py``; its hand-set trades make slot 2 the busiest Layer I slot
(1.5 kWh against 1.2 kWh in slot 3). Feeder north is configured with limits 0.94 / 1.06 pu, south with the
default 0.95 / 1.05; prosumer k of a feeder sits (k + 1) x 0.1 km from its source; each prosumer's ledger is one
utility bill equal to its total_cost, and its prosumer_kpis row has every column a real run writes.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federates.common.config import MODES
from federates.common.errors import ConfigError
from federates.common.tables import TABLES
from runner import report
from runner import report_data as rd
from runner.report import (
    COMPARISON_DEFINITIONS,
    FIGURES,
    KPI_DEFINITIONS,
    KPI_THEME,
    THEMES,
    RunData,
    busiest_slot,
    kpi_theme,
    load_run,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FEEDERS = {"north": ["north_p0", "north_p1", "north_p2"], "south": ["south_p0", "south_p1", "south_p2"]}
TIMES = np.arange(0, 7200, 300, dtype=float)
TARIFF = {"retail_tou": [{"start_h": 0.0, "price_per_kwh": 0.12}, {"start_h": 7.0, "price_per_kwh": 0.18}],
          "buyback_price_per_kwh": 0.04}
KPIS = {"total_cost": -1.25, "p2p_energy_kwh": 2.7, "self_sufficiency_pct": 40.0,
        "self_consumption_pct": 30.0, "mode": "full", "prosumers": 6, "v_min_pu": 0.94, "v_max_pu": 1.06}
IMG = re.compile(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)'")
LIMITS = {"north": (0.94, 1.06), "south": (0.95, 1.05)}
KPI_COLUMNS = ("prosumer,feeder,total_cost,cash_cost,battery_start_kwh,battery_end_kwh,stored_energy_change_kwh,"
               "stored_energy_value,community_battery_stored_value,activation_compensation_amount,p2p_purchase_amount,"
               "p2p_sale_amount,revenue_share_amount,utility_export_amount,utility_import_amount,pv_kwh,demand_kwh,"
               "export_kwh,import_kwh,p2p_bought_kwh,p2p_sold_kwh,local_supply_kwh,pv_used_kwh,self_sufficiency_pct,"
               "self_consumption_pct,unmet_flexible_kwh").split(",")  # the columns of a real run's prosumer_kpis


def write_table(run: Path, table: str, rows: list[dict]) -> None:
    df = pd.DataFrame(rows, columns=list(TABLES[table]))
    (run / "results").mkdir(parents=True, exist_ok=True)
    df.to_csv(run / "results" / f"{table}.csv", index=False)


def steps_rows(rng: np.random.Generator) -> list[dict]:
    rows = []
    for feeder, names in FEEDERS.items():
        for i, name in enumerate(names):
            soc = 0.0 if name == "south_p2" else 5.0 + rng.uniform(0, 1)  # south_p2 has no battery
            for t in TIMES:
                soc = 0.0 if name == "south_p2" else float(np.clip(soc + rng.normal(0, 0.3), 1, 9))
                rows.append({"time": t, "prosumer": name, "feeder": feeder, "pv_kw": 2.0 * i, "load_kw": 1.0,
                             "flex_kw": 0.0, "battery_kw": 0.0, "soc_kwh": soc, "grid_kw": rng.normal(0, 2),
                             "curtailed_kw": 0.0, "p2p_commit_kw": 0.0, "reserve_up_kw": 0.0,
                             "reserve_down_kw": 0.0, "delta_p_kw": 0.0, "unmet_flex_kwh": 0.0})
    return rows


def trade(slot, market, buyer, seller, energy_kwh, price_per_kwh, *, layer=1) -> dict:
    period = 1800 if layer == 1 else 300
    return {"time": (slot - 1) * period + 4, "slot": slot, "layer": layer, "market": market, "buyer": buyer,
            "seller": seller, "energy_kwh": energy_kwh, "price_per_kwh": price_per_kwh}


def make_run(run: Path, *, seed: int = 3) -> Path:
    """A full synthetic run folder: results/*.csv, prosumer_kpis.csv, kpis.json and a prosumer config."""
    rng = np.random.default_rng(seed)
    steps = steps_rows(rng)
    write_table(run, "prosumer_steps", steps)
    write_table(run, "feeder_steps", [
        {"time": t, "feeder": f, "converged": True, "v_min_pu": 0.97, "v_max_pu": 1.03,
         "p_head_kw": 10 + rng.normal(0, 3), "q_head_kvar": 1.0, "losses_kw": 0.2, "max_loading_pct": 40.0,
         "n_violations": 0, "members_p_kw": 0.0, "loads_kw": 10.0, "message": "converged"}
        for f in FEEDERS for t in TIMES])
    write_table(run, "voltages", [
        {"time": t, "feeder": s["feeder"], "prosumer": s["prosumer"], "v_pu": 1.0 + 0.02 * s["grid_kw"]}
        for s in steps for t in [s["time"]]])
    write_table(run, "trades", [
        trade(2, "vpp_north", "north_p0", "north_p1", 0.5, 0.10),
        trade(2, "vpp_north", "north_p0", "north_p2", 0.7, 0.10),
        trade(2, "vpp_south", "south_p0", "south_p1", 0.3, 0.09),
        trade(3, "vpp_north", "north_p1", "north_p2", 1.2, 0.11),
        trade(8, "vpp_market_up", "vpp_north", "vpp_south", 0.2, 0.05, layer=3)])
    write_table(run, "ancillary", [
        {"time": 900 * q + 7, "slot": q + 1, "vpp": "vpp_north", "product": product, "offered_kw": 10.0,
         "offer_price": 5.0, "awarded_kw": 10.0, "clearing_price": price + q, "required_kw": np.nan,
         "delivered_kw": np.nan,
         "performance": np.nan, "penalty": 0.0}
        for q in range(6) for product, price in (("reg_up", 18.0), ("spin", 10.0))] + [
        {"time": 900, "slot": 1, "vpp": "vpp_north", "product": "reg_up", "offered_kw": 10.0,
         "offer_price": np.nan, "awarded_kw": 10.0, "clearing_price": 99.0, "required_kw": 10.0, "delivered_kw": 9.0,
         "performance": 0.9, "penalty": 0.1}])
    names = [n for ns in FEEDERS.values() for n in ns]
    per = pd.DataFrame(rng.uniform(-2, 2, (len(names), len(KPI_COLUMNS) - 2)), columns=KPI_COLUMNS[2:])
    per.insert(0, "feeder", [n.split("_")[0] for n in names])
    per.insert(0, "prosumer", names)
    per["total_cost"] = np.round(rng.normal(0, 1, len(names)), 3)
    per[["stored_energy_value", "community_battery_stored_value"]] = 0.0
    per["cash_cost"] = per["total_cost"]
    per.to_csv(run / "results" / "prosumer_kpis.csv", index=False)
    write_table(run, "ledger", [{"time": 1800, "participant": n, "counterparty": "utility", "item": "utility_import",
                                 "energy_kwh": 1.0, "amount": -c}
                                for n, c in zip(names, per["total_cost"], strict=True)])
    write_table(run, "placement", [
        {"feeder": f, "load": f"load_{n}", "prosumer": n, "houses": 1, "bus": f"bus_{n}", "distance_km": 0.1 * (k + 1),
         "reason": ""} for f, ns in FEEDERS.items() for k, n in enumerate(ns)] + [
        {"feeder": "north", "load": "factory", "prosumer": "", "houses": 0, "bus": "b9", "distance_km": 0.05,
         "reason": "above the residential size"}])
    (run / "kpis.json").write_text(json.dumps(KPIS))
    (run / "federates").mkdir()
    config = {"runtime": {"start": "2024-06-21T06:00:00", "duration_s": 7200, "mode": "full"}, "tariff": TARIFF}
    (run / "federates" / "prosumers_north_0.json").write_text(json.dumps(config))
    for feeder, (lo, hi) in LIMITS.items():
        cfg = {"runtime": {"mode": "full"}, "feeder": {"name": feeder, "master": f"/x/{feeder}/Master.dss",
                                                     "v_min_pu": lo, "v_max_pu": hi}}
        (run / "federates" / f"feeder_{feeder}.json").write_text(json.dumps(cfg))
    return run


def make_empty_run(run: Path) -> Path:
    """A run folder whose every table has only its header (no kpis.json, no prosumer_kpis.csv)."""
    for table in TABLES:
        write_table(run, table, [])
    return run


def make_compare(folder: Path, names: list[str]) -> dict[str, list[float]]:
    costs = {}
    for i, mode in enumerate(MODES):
        costs[mode] = [round(1.0 - 0.25 * i + 0.1 * k, 3) for k in range(len(names))]
        (folder / mode / "results").mkdir(parents=True)
        pd.DataFrame({"prosumer": names, "total_cost": costs[mode]}).to_csv(
            folder / mode / "results" / "prosumer_kpis.csv", index=False)
        pd.DataFrame({"time": 0, "participant": names, "counterparty": "utility", "item": "utility_import",
                      "energy_kwh": 1.0, "amount": [-c for c in costs[mode]]}).to_csv(
            folder / mode / "results" / "ledger.csv", index=False)
    pd.DataFrame({"mode": list(MODES), "total_cost": [sum(c) for c in costs.values()],
                  "savings_vs_topdown_pct": [1.5, 2.5, 3.5, 4.5, 5.5]}).to_csv(folder / "comparison.csv",
                                                                             index=False)
    return costs


def embedded_pngs(html_text: str) -> list[bytes]:
    return [base64.b64decode(b64, validate=True) for b64 in IMG.findall(html_text)]


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, Path]:
    run = make_run(tmp_path_factory.mktemp("run"))
    return run, write_report(run)


def test_report_is_one_file_with_every_figure_embedded(written):
    run, path = written
    assert path == run / "report.html" and path.is_file()
    text = path.read_text(encoding="utf-8")
    pngs = embedded_pngs(text)
    assert len(pngs) == len(FIGURES) == 11
    assert text.count("<img") == 11, "every <img> is an embedded PNG"
    shown = [spec for theme in THEMES for spec in FIGURES if spec.theme == theme]  # the page groups them by theme
    for png, spec in zip(pngs, shown, strict=True):
        assert png.startswith(PNG_SIGNATURE) and len(png) > 1024
        assert (run / "figures" / f"{spec.name}.png").read_bytes() == png
        assert f"<h3>{html.escape(spec.caption)}</h3>" in text
    for name in ("prosumer_bills", "p2p_prices", "ancillary", "voltage_profile"):
        assert (run / "figures" / f"{name}.csv").is_file(), "the data of the figure beside it"
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", text), "no external resources"
    assert "<script" not in text and "<link" not in text


def test_kpi_definitions_and_tables_are_in_the_report(written):
    _, path = written
    text = path.read_text(encoding="utf-8")
    assert "locally produced energy consumed / demand" in text
    assert "locally produced energy consumed / production" in text and "whatever was traded" in text
    for key in KPIS:
        assert key in text
        assert KPI_DEFINITIONS[key] in html.unescape(text)
    for name in ("north_p0", "south_p2"):
        assert f"<td>{name}</td>" in text, "per-prosumer KPI table"


def test_figures_are_deterministic(written, tmp_path):
    run, _ = written
    again = tmp_path / "again"
    shutil.copytree(run / "results", again / "results")
    shutil.copytree(run / "federates", again / "federates")
    shutil.copy(run / "kpis.json", again / "kpis.json")
    write_report(again)
    for spec in FIGURES:
        png = f"figures/{spec.name}.png"
        assert (again / png).read_bytes() == (run / png).read_bytes()


def test_busiest_slot_and_its_network(written):
    run, _ = written
    data = load_run(run)
    trades = data.frames["trades"]
    assert busiest_slot(trades[trades["layer"] == 1]) == 2
    fig = report.figure_trade_network(data)
    (ax,) = fig.axes
    assert "slot 2 (07:00-07:30)" in ax.get_title() and "1.50 kWh in 3 seller-buyer pairs" in ax.get_title()
    arrows = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
    widths = sorted(round(a.arrow_patch.get_linewidth(), 6) for a in arrows)
    assert widths == sorted(round(0.6 + 7.0 * e / 0.7, 6) for e in (0.5, 0.7, 0.3))
    labels = {t.get_text() for t in ax.texts}
    assert {"feeder north", "feeder south"} <= labels


def test_import_export_lines_are_the_sums_of_grid_kw(written):
    run, _ = written
    data = load_run(run)
    fig = report.figure_grid(data)
    steps = data.frames["prosumer_steps"]
    for ax, feeder in zip(fig.axes, sorted(FEEDERS), strict=True):
        line = next(ln for ln in ax.get_lines() if ln.get_label().startswith("prosumers' net export"))
        expected = steps[steps["feeder"] == feeder].groupby("time")["grid_kw"].sum().to_numpy()
        np.testing.assert_allclose(line.get_ydata(), expected)
        head = next(ln for ln in ax.get_lines() if ln.get_label().startswith("feeder head"))
        assert len(head.get_ydata()) == len(TIMES)


def test_prices_figure_has_tariff_and_only_award_rows(written):
    run, _ = written
    data = load_run(run)
    fig = report.figure_prices(data)
    top, bottom = fig.axes
    retail = next(ln for ln in top.get_lines() if ln.get_label() == "retail tariff")
    x, y = retail.get_xdata(), retail.get_ydata()
    # the run starts at 06:00, so the 07:00 switch is 1 h in
    assert y[np.searchsorted(x, 0.5)] == 0.12 and y[np.searchsorted(x, 1.5)] == 0.18
    reg_up = next(ln for ln in bottom.get_lines() if ln.get_label() == "reg_up")
    assert 99.0 not in reg_up.get_ydata(), "the delivery row (offer_price NaN) is not a clearing price"
    assert list(reg_up.get_ydata()[:6]) == [18.0, 19.0, 20.0, 21.0, 22.0, 23.0]


def test_soc_and_voltage_figures(written):
    run, _ = written
    data = load_run(run)
    soc = report.figure_soc(data)
    assert len(soc.axes[0].get_lines()) == 5, "5 batteries: south_p2 has none"
    total = soc.axes[1].get_lines()[0].get_ydata()
    steps = data.frames["prosumer_steps"]
    np.testing.assert_allclose(total, steps.groupby("time")["soc_kwh"].sum().to_numpy())
    volt = report.figure_voltages(data)
    mesh = volt.axes[0].collections[0]
    assert mesh.norm.vmin + mesh.norm.vmax == pytest.approx(2.0), "colour scale centred on 1.0"
    assert mesh.norm.vmax >= 1.06


def test_empty_tables_do_not_crash(tmp_path):
    run = make_empty_run(tmp_path / "empty")
    path = write_report(run)
    text = path.read_text(encoding="utf-8")
    assert len(embedded_pngs(text)) == len(FIGURES)
    assert "no kpis.json in this run folder" in text and "no prosumer KPIs in this run" in text
    assert "locally produced energy consumed / demand" in text
    assert all(v in html.unescape(text) for v in KPI_DEFINITIONS.values()), "defined even without kpis.json"
    data = load_run(run)
    assert "no trades in this run" in texts(report.figure_trade_network(data))
    assert "no trades in this run" in texts(report.figure_prices(data))
    assert "no batteries in this run" in texts(report.figure_soc(data))


def test_topdown_like_run_without_trades(tmp_path):
    run = make_run(tmp_path / "topdown")
    write_table(run, "trades", [])
    write_table(run, "ancillary", [])
    data = load_run(run)
    assert "no trades in this run" in texts(report.figure_trade_network(data))
    top_texts = texts(report.figure_prices(data))
    assert "no trades in this run" in top_texts and "no ancillary market in this run" in top_texts
    assert len(embedded_pngs(write_report(run).read_text(encoding="utf-8"))) == len(FIGURES)


def test_compare_dir_gives_grouped_bars_and_the_table(tmp_path):
    run = make_run(tmp_path / "run")
    names = sorted(n for ns in FEEDERS.values() for n in ns)
    costs = make_compare(tmp_path / "cmp", names)
    data = load_run(run, tmp_path / "cmp")
    fig = report.figure_costs(data)
    bars = fig.axes[0].containers
    assert [b.get_label() for b in bars] == list(MODES)
    for container, mode in zip(bars, MODES, strict=True):
        assert [round(r.get_height(), 6) for r in container] == costs[mode]
    text = write_report(run, compare_dir=tmp_path / "cmp").read_text(encoding="utf-8")
    assert "Mode comparison" in text and "savings_vs_topdown_pct" in text and "5.5" in text
    assert all(v in html.unescape(text) for v in COMPARISON_DEFINITIONS.values())


def test_every_kpi_key_has_a_meaning_and_a_theme():
    keys = [*KPI_DEFINITIONS, *COMPARISON_DEFINITIONS, "mechanism_north", "self_sufficiency_pct_north",
            "self_consumption_pct_south"]
    for key in keys:
        assert kpi_theme(key) in THEMES, key
        assert report.kpi_meaning(key) or key in COMPARISON_DEFINITIONS, key
    assert set(KPI_THEME) <= set(KPI_DEFINITIONS) | set(COMPARISON_DEFINITIONS), "a theme for a key nobody defines"
    assert kpi_theme("something_new") == "other" and report.kpi_meaning("something_new") == ""
    assert "fell back" in report.kpi_meaning("hems_fallbacks")


def test_key_figures_are_grouped_by_theme_with_their_meaning(written):
    _, path = written
    text = html.unescape(path.read_text(encoding="utf-8"))
    order = [text.index(f"id='kpi-{theme}'") for theme in ("money", "markets", "energy", "grid", "run")]
    assert order == sorted(order), "themes in their order"
    money = text[order[0]:order[1]]
    assert "total_cost" in money and KPI_DEFINITIONS["total_cost"] in money and "p2p_energy_kwh" not in money
    assert "<td>v_min_pu</td><td>0.94</td>" in text[order[3]:order[4]]
    run = text[order[4]:]
    assert "<td>mode</td><td>full</td>" in run


def test_what_ran_names_each_feeders_market_mode_and_limits(written):
    _, path = written
    text = path.read_text(encoding="utf-8")
    table = text[text.index("id='run'"):text.index("id='key-figures'")]
    assert "<td>north</td>" in table and "<td>0.94 - 1.06</td>" in table and "<td>0.95 - 1.05</td>" in table
    assert "<td>full</td>" in table and "fixed (feeder model)" in table


def test_voltage_profile_uses_the_distance_and_each_feeders_limits(written):
    run, _ = written
    data = load_run(run)
    fig = report.figure_voltage_profile(data)
    for ax, feeder in zip(fig.axes, sorted(FEEDERS), strict=True):
        bands = ax.collections[0]  # the min-max lines, one per prosumer
        xs = sorted(seg[0][0] for seg in bands.get_segments())
        assert xs == pytest.approx([0.1, 0.2, 0.3])
        levels = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()}
        lo, hi = LIMITS[feeder]
        assert levels[f"lower limit {lo:g} pu"] == lo and levels[f"upper limit {hi:g} pu"] == hi
    v = data.frames["voltages"]
    lowest = v[v["feeder"] == "north"]["v_pu"].min()
    assert f"{lowest:.4f} pu" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_feeder_voltage_shows_the_source_voltage_only_when_recorded(written, tmp_path):
    run, _ = written
    fig = report.figure_feeder_voltage(load_run(run))
    assert "source voltage not recorded" in fig.axes[0].get_title()
    assert not any(line.get_label().startswith("source") for line in fig.axes[0].get_lines())
    again = tmp_path / "with_source"
    shutil.copytree(run, again)
    fs = pd.read_csv(again / "results" / "feeder_steps.csv")
    fs["v_source_pu"] = 1.0 + fs["time"] / 1e6
    fs.to_csv(again / "results" / "feeder_steps.csv", index=False)
    data = load_run(again)
    fig = report.figure_feeder_voltage(data)
    source = next(line for line in fig.axes[0].get_lines() if line.get_label().startswith("source"))
    np.testing.assert_allclose(source.get_ydata(), 1.0 + TIMES / 1e6)
    assert "from the transmission federate" in report.feeders_table(data)


def test_bills_figure_stacks_each_prosumers_items_in_both_modes(tmp_path):
    run = make_run(tmp_path / "run")
    names = sorted(n for ns in FEEDERS.values() for n in ns)
    costs = make_compare(tmp_path / "cmp", names)
    data = load_run(run, tmp_path / "cmp")
    assert set(data.bills) == {"full", "topdown"} and "top-down run of the comparison" in data.bills_note
    per = data.per_prosumer.set_index("prosumer")
    np.testing.assert_allclose(data.bills["full"].sum(axis=1), per["total_cost"].reindex(data.bills["full"].index))
    fig = report.figure_bills(data)
    north = fig.axes[0]
    bars = [r for c in north.containers for r in c]
    left = [r for r in bars if r.get_hatch() is None]
    right = [r for r in bars if r.get_hatch()]
    assert len(left) == len(right) == 3, "one item (utility energy) per prosumer and mode in feeder north"
    assert sorted(round(r.get_height(), 6) for r in left) == sorted(per.loc[FEEDERS["north"], "total_cost"])
    topdown = dict(zip(names, costs["topdown"], strict=True))
    assert sorted(round(r.get_height(), 6) for r in right) == sorted(topdown[n] for n in FEEDERS["north"])
    nets = np.concatenate([c.get_offsets()[:, 1] for c in north.collections])
    assert sorted(np.round(nets, 6)) == sorted([*per.loc[FEEDERS["north"], "total_cost"],
                                                *(topdown[n] for n in FEEDERS["north"])])


def test_many_prosumers_show_the_extremes_the_mean_and_a_box_per_mode(written):
    run, _ = written
    data = load_run(run)
    names = [f"big_p{i:04d}" for i in range(1000)]
    cost = pd.Series(np.linspace(-1, 1, 1000), index=pd.Index(names, name="prosumer"))
    items = [k for k, _, _ in rd.BILL_ITEMS]
    bill = pd.DataFrame(0.0, index=cost.index, columns=items).assign(utility_import=cost)
    many = RunData(run, data.frames, {}, pd.DataFrame({"prosumer": names, "feeder": "big", "total_cost": cost.values}),
                   mode="full", mode_costs={"topdown": cost + 0.5, "full": cost},
                   bills={"full": bill, "topdown": bill.assign(utility_import=cost + np.linspace(0, 1, 1000))})
    fig = report.figure_bills(many)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == 1 + 2 * report.BILLS_EACH and labels[0] == "mean of all"
    assert labels[1] == "big_p0000" and labels[-1] == "big_p0999", "least and most saved"
    assert "saved least" in ax.get_title()
    box = report.figure_costs(many)
    assert [t.get_text() for t in box.axes[0].get_xticklabels()] == ["topdown", "full"]
    table, note = report.prosumer_table(many)
    assert len(table) == 2 * report.TABLE_EACH and "of 1000" in note


def test_ancillary_figure_gives_award_request_and_delivery(written):
    run, _ = written
    fig = report.figure_ancillary(load_run(run))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["vpp_north reg_up", "vpp_north spin"]
    box = fig.axes[0].texts[0].get_text()
    # the one delivery row: 10 kW asked, 9 kW delivered for 5 minutes, penalised 0.1 $
    assert "delivered 0.8 of 0.8 kWh asked, accuracy 90 %" in box and "penalties 0.10 $ in 1 intervals" in box
    assert "awarded 15 of 15 kW x h offered" in box, "6 slots of 10 kW x 15 min"


def test_bad_folders_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no results/ folder"):
        write_report(tmp_path)
    run = make_empty_run(tmp_path / "run")
    with pytest.raises(ConfigError, match="compare folder"):
        write_report(run, compare_dir=tmp_path / "missing")


def chromium(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    if exe is None:
        reason = "chromium not installed (apt-get install chromium): browser rendering not checked"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run installs it, so CI must have it")
        pytest.skip(reason)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_a_headless_browser(written, tmp_path):
    from PIL import Image

    _, path = written
    shot = tmp_path / "shot.png"
    chromium(f"--user-data-dir={tmp_path / 'profile1'}", f"--screenshot={shot}", "--window-size=1280,4000",
             path.as_uri())
    with Image.open(shot) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500, "the page shows figures, not a blank sheet"
    # a probe copy records every image's decoded width once the page has loaded
    probe = tmp_path / "probe.html"
    script = ("<script>addEventListener('load', () => { for (const i of document.images) "
              "i.setAttribute('data-natural-width', i.naturalWidth); "
              "const t = document.querySelector('table.wide'); "
              "document.body.setAttribute('data-table-overflow', "
              "Math.ceil(t.scrollWidth - t.parentElement.clientWidth)); });</script></body>")
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", script), encoding="utf-8")
    dom = chromium(f"--user-data-dir={tmp_path / 'profile2'}", "--virtual-time-budget=5000", "--window-size=1280,900",
                   "--dump-dom", probe.as_uri()).stdout
    assert dom.count("<img") == len(FIGURES)
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == len(FIGURES) and min(widths) >= 600, widths
    # the per-prosumer table, every column of a real run's prosumer_kpis, fits a 1280-pixel window: no scrolling
    fits = re.search(r'data-table-overflow="(-?\d+)"', dom)
    assert fits is not None and int(fits.group(1)) <= 0, "the per-prosumer table is wider than the page"
