"""T&D co-simulation end to end (the td run of conftest.py: small.yaml over the IEEE 39-bus system, beside
small_run, the same scenario without it): the feeders' source voltage follows the transmission solution, which
changes their voltages; without a transmission system nothing changes; a failing transmission federate fails the
run naming it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federates.common.config import load_scenario
from federates.common.errors import HarmonyError
from runner.cli import execute

pytestmark = pytest.mark.e2e
SMALL = Path(__file__).with_name("small.yaml")
MASTER_SOURCE_PU = {"suburb": 1.02, "rural": 1.03}  # Vsource.source pu of lv_suburb and lv_rural


def table(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / "results" / f"{name}.csv")


def test_the_feeders_source_follows_the_transmission_solution(td_run):
    run_dir, kpis = td_run
    links = {x["feeder"]: x for x in json.loads((run_dir / "federates" / "transmission.json").read_text())["links"]}
    steps, buses = table(run_dir, "feeder_steps"), table(run_dir, "transmission")
    tr = table(run_dir, "transmission_steps")
    n = len(steps.time.unique())
    assert len(tr) == n and tr.converged.all() and tr.case.eq("case39").all()
    assert len(buses) == 39 * n
    # the balance of every solution, recomputed from the recorded totals
    assert np.allclose(tr.p_gen_mw, tr.p_load_mw + tr.shunt_mw + tr.losses_mw, atol=1e-6)
    for f, link in links.items():
        # each feeder's tap gives its own source voltage at the case's published operating point (bus 4: 1.0045 pu)
        assert link["tap_pu"] == pytest.approx(MASTER_SOURCE_PU[f] / {4: 1.00446, 20: 0.99101}[link["bus"]], rel=1e-4)
        mine = steps[steps.feeder == f].set_index("time").v_source_pu
        bus_v = buses[buses.bus == link["bus"]].set_index("time").v_pu
        assert np.allclose(mine, link["tap_pu"] * bus_v.loc[mine.index], atol=1e-9), f
        assert (mine - MASTER_SOURCE_PU[f]).abs().max() > 1e-3, f"{f}: the transmission system moved its source"
        # fixed taps: every substation row says step 0 and the source the feeder applied
        subs = table(run_dir, "substations").query("feeder == @f").set_index("time")
        assert (subs.tap_step == 0).all() and (subs.bus == link["bus"]).all()
        assert np.allclose(subs.v_source_pu.loc[mine.index], mine, atol=1e-12), f
    assert "self_sufficiency_pct" in kpis


def test_coupling_changes_the_feeders_voltages(td_run, small_run):
    coupled, alone = table(td_run[0], "feeder_steps"), table(small_run[0], "feeder_steps")
    both = coupled.merge(alone, on=["time", "feeder"], suffixes=("_td", ""))
    assert len(both) == len(coupled) == len(alone)
    for f, rows in both.groupby("feeder"):
        shift = rows.v_source_pu_td - rows.v_source_pu
        assert shift.abs().min() > 5e-3, f
        # the lowest service voltage moves with the source every interval; the highest too, but the VPP's voltage
        # guard reacts to it (it caps exports above 1.05 pu), so only its direction on the whole is asserted
        assert (rows.v_min_pu_td - rows.v_min_pu).abs().min() > 1e-3, f
        assert np.sign(rows.v_min_pu_td - rows.v_min_pu).eq(np.sign(shift)).all(), f
        assert np.sign((rows.v_max_pu_td - rows.v_max_pu).mean()) == np.sign(shift.mean()), f


def test_without_a_transmission_system_the_source_is_the_masters(small_run):
    run_dir, _ = small_run
    steps = table(run_dir, "feeder_steps")
    for f, pu in MASTER_SOURCE_PU.items():
        assert steps[steps.feeder == f].v_source_pu.eq(pu).all(), f
    assert table(run_dir, "transmission").empty and table(run_dir, "transmission_steps").empty
    assert not (run_dir / "federates" / "transmission.json").exists()
    for name in json.loads((run_dir / "federation.json").read_text())["federates"]:
        assert name["name"] != "transmission"


def test_a_failing_transmission_federate_fails_the_run_naming_it(tmp_path, monkeypatch):
    sc = load_scenario(SMALL, ["hours=0.25", "mode=topdown",
                               "transmission={case: case9, bus_of: {suburb: 5}, feeders_per_bus: 100}"])
    monkeypatch.setenv("HARMONY_FAULT", "transmission@302")
    with pytest.raises(HarmonyError) as err:
        execute(sc, tmp_path / "r", show_progress=False)
    text = str(err.value)
    assert "did not finish" in text and "transmission:" in text and "fault injected" in text, text
    assert not (tmp_path / "r" / "kpis.json").exists()
