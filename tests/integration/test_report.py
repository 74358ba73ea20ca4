"""``runner.report.write_report`` on small synthetic run folders (seeded), and in a headless browser.

The synthetic run has 2 feeders x 3 prosumers over 2 hours of 5-minute ticks, written with the columns
declared in ``federates/common/tables.py``; its hand-set trades make slot 2 the busiest Layer I slot
(1.5 kWh against 1.2 kWh in slot 3).
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
from runner.report import (
    COMPARISON_DEFINITIONS,
    FIGURES,
    KPI_DEFINITIONS,
    busiest_slot,
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
         "offer_price": 5.0, "awarded_kw": 10.0, "clearing_price": price + q, "delivered_kw": np.nan,
         "performance": np.nan, "penalty": 0.0}
        for q in range(6) for product, price in (("reg_up", 18.0), ("spin", 10.0))] + [
        {"time": 900, "slot": 1, "vpp": "vpp_north", "product": "reg_up", "offered_kw": 10.0,
         "offer_price": np.nan, "awarded_kw": 10.0, "clearing_price": 99.0, "delivered_kw": 9.0,
         "performance": 0.9, "penalty": 0.1}])
    names = [n for ns in FEEDERS.values() for n in ns]
    pd.DataFrame({"prosumer": names, "feeder": [n.split("_")[0] for n in names],
                  "total_cost": np.round(rng.normal(0, 1, len(names)), 3)}).to_csv(
        run / "results" / "prosumer_kpis.csv", index=False)
    (run / "kpis.json").write_text(json.dumps(KPIS))
    (run / "federates").mkdir()
    config = {"runtime": {"start": "2024-06-21T06:00:00", "duration_s": 7200}, "tariff": TARIFF}
    (run / "federates" / "prosumers_north_0.json").write_text(json.dumps(config))
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
    assert len(pngs) == len(FIGURES) == 6
    assert text.count("<img") == 6, "every <img> is an embedded PNG"
    for png, (name, _, _) in zip(pngs, FIGURES, strict=True):
        assert png.startswith(PNG_SIGNATURE) and len(png) > 1024
        assert (run / "figures" / f"{name}.png").read_bytes() == png
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
    for name, _, _ in FIGURES:
        png = f"figures/{name}.png"
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
    assert len(embedded_pngs(text)) == 6
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
    assert len(embedded_pngs(write_report(run).read_text(encoding="utf-8"))) == 6


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
              "i.setAttribute('data-natural-width', i.naturalWidth); });</script></body>")
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", script), encoding="utf-8")
    dom = chromium(f"--user-data-dir={tmp_path / 'profile2'}", "--virtual-time-budget=5000", "--dump-dom",
                   probe.as_uri()).stdout
    assert dom.count("<img") == 6
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == 6 and min(widths) >= 600, widths
