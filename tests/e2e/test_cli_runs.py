"""The documented ways to run a federation: `harmony build` + `helics run --path`, then `harmony collect`;
and `harmony compare` over the five modes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from runner.build import free_port
from runner.cli import main
from runner.launch import helics_env
from runner.report import FIGURES

pytestmark = pytest.mark.e2e
SMALL = Path(__file__).with_name("small.yaml")


def test_built_federation_runs_under_the_helics_runner(tmp_path):
    out = tmp_path / "fed"
    built = CliRunner().invoke(main, ["build", str(SMALL), "--out", str(out), "--hours", "0.5",
                                      "--port", str(free_port())])
    assert built.exit_code == 0, built.output
    runner = json.loads((out / "federation.json").read_text())
    assert {f["name"] for f in runner["federates"]} >= {"broker", "iso", "vpp_market", "feeder_suburb"}
    done = subprocess.run(["helics", "run", "--path", str(out / "federation.json")], env=helics_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    collected = CliRunner().invoke(main, ["collect", str(out), "--scenario", str(SMALL)])
    assert collected.exit_code == 0, collected.output
    feeder = pd.read_csv(out / "results" / "feeder_steps.csv")
    assert len(feeder) == 2 * 6 and feeder.converged.all()
    assert json.loads((out / "kpis.json").read_text())["prosumers"] == 12


def test_compare_runs_every_mode_on_the_same_prosumers(tmp_path):
    result = CliRunner().invoke(main, ["compare", str(SMALL), "--out", str(tmp_path), "--hours", "1"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "comparison.csv", index_col="mode")
    assert list(table.index) == ["topdown", "netmetering", "layer1", "layer12", "full"]
    # only the market modes trade; only the VPP modes earn ancillary income; nobody leaves flexible load unmet
    assert table.loc["topdown", "p2p_energy_kwh"] == 0 and table.loc["netmetering", "p2p_energy_kwh"] == 0
    assert table.loc[["layer1", "layer12", "full"], "p2p_energy_kwh"].gt(0).all()
    assert table.loc[["topdown", "netmetering", "layer1"], "ancillary_revenue"].eq(0).all()
    assert table.loc[["layer12", "full"], "ancillary_revenue"].gt(0).all()
    assert table.unmet_flexible_kwh.eq(0).all() and table.loc["topdown", "savings_vs_topdown_pct"] == 0
    # the same prosumers with the same weather in every mode
    costs = pd.read_csv(tmp_path / "prosumer_costs.csv", index_col=0)
    assert list(costs.columns) == list(table.index) and len(costs) == 12
    steps = {m: pd.read_csv(tmp_path / m / "results" / "prosumer_steps.csv") for m in ("topdown", "full")}
    pd.testing.assert_series_equal(steps["topdown"].groupby("prosumer").pv_kw.sum(),
                                   steps["full"].groupby("prosumer").pv_kw.sum())
    # net metering credits every exported kWh at retail instead of the 0.04 $/kWh buy-back
    ledgers = {m: pd.read_csv(tmp_path / m / "results" / "ledger.csv") for m in ("topdown", "netmetering")}
    for mode, credit in (("topdown", 0.04), ("netmetering", 0.18)):  # 10:00-11:00 retail is 0.18 $/kWh
        exports = ledgers[mode][ledgers[mode].item == "utility_export"]
        assert (exports.amount - credit * exports.energy_kwh).abs().max() < 1e-9
    # the report of the full run, with every mode's cost, is one self-contained page
    reported = CliRunner().invoke(main, ["report", str(tmp_path / "full"), "--compare", str(tmp_path)])
    assert reported.exit_code == 0, reported.output
    html = (tmp_path / "full" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES) and "src=\"http" not in html
