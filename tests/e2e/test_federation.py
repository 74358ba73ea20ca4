"""A short real `helics run` of every federate kind, checked from what was recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from runner.cli import main

pytestmark = pytest.mark.e2e
SMALL = Path(__file__).with_name("small.yaml")


@pytest.fixture(scope="module")
def run(small_run) -> tuple[Path, dict]:
    return small_run  # one shared run of small.yaml (tests/e2e/conftest.py)


def table(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / "results" / f"{name}.csv")



def _topic(ex: pd.DataFrame) -> pd.Series:
    """The topic of each exchange row's key (``<federate>/<topic>[/<addressee>]``)."""
    return ex.key.str.split("/").str[1]

def test_layer1_bids_are_cleared_and_used_before_their_slot(run):
    run_dir, _ = run
    ex = table(run_dir, "exchange")
    for slot in (1, 2):
        start = slot * 1800
        orders = ex[(ex.action == "publish") & ex.key.str.endswith("/orders") & (ex.target == slot)]
        cleared = ex[(ex.action == "publish") & (_topic(ex) == "positions") & (ex.target == slot)]
        used = ex[(ex.action == "read") & (_topic(ex) == "positions") & (ex.target == slot)]
        # every prosumer federate bids; each VPP clears and sends each of its prosumer federates their positions
        assert len(orders) == 4 and len(cleared) == 4 and cleared.federate.nunique() == 2, f"slot {slot}"
        assert orders.time.max() < cleared.time.min()
        # every prosumer federate read its VPP's positions, after clearing and before the slot starts
        assert sorted(used.federate) == sorted(orders.federate)
        assert cleared.time.max() < used.time.min() and used.time.max() < start


def test_layer2_awards_reach_members_before_their_slot(run):
    run_dir, _ = run
    ex = table(run_dir, "exchange")
    for slot in range(1, 6):
        offers = ex[(ex.action == "publish") & ex.key.str.endswith("/offers") & (ex.target == slot)]
        awards = ex[(ex.action == "publish") & (ex.key == "iso/awards") & (ex.target == slot)]
        reserve = ex[(ex.action == "publish") & (_topic(ex) == "reserve") & (ex.target == slot)]
        assert len(offers) == 2 and len(awards) == 1 and len(reserve) == 4  # one per prosumer federate
        assert offers.time.max() < awards.time.min() < reserve.time.min() and reserve.time.max() < slot * 900


def test_every_interval_is_dispatched_solved_and_measured(run):
    run_dir, _ = run
    feeder = table(run_dir, "feeder_steps")
    assert sorted(feeder.groupby("feeder").size().tolist()) == [18, 18]
    assert feeder.converged.all()
    steps = table(run_dir, "prosumer_steps")
    assert steps.groupby("prosumer").size().eq(18).all() and steps.prosumer.nunique() == 12
    # the feeder applied exactly what the prosumers injected
    steps["time"] = steps.time.round()
    injected = steps.groupby(["feeder", "time"]).grid_kw.sum()
    metered = feeder.set_index(["feeder", "time"]).members_p_kw
    pd.testing.assert_series_equal(injected.sort_index(), metered.sort_index(), check_names=False)
    # and every solved interval was measured: each VPP reads each feeder state at MEASURE (+2 s), the ISO at
    # SETTLE, the start of the next tick (+300 s)
    ex = table(run_dir, "exchange")
    for reader, after_s in (("vpp_suburb", 2), ("vpp_rural", 2), ("iso", 300)):
        reads = ex[(ex.federate == reader) & (ex.action == "read") & ex.key.str.endswith("/state")]
        per_feeder = 1 if reader.startswith("vpp_") else 2
        assert sorted(reads.target) == sorted(list(range(18)) * per_feeder), reader
        assert (reads.time == reads.target * 300 + after_s).all(), reader
    # the ISO settled every interval of every awarded slot (slots 1-5 -> intervals 3-17) for each VPP
    anc = table(run_dir, "ancillary")
    settled = anc[anc.delivered_kw.notna()]
    awarded = anc[anc.offer_price.notna() & (anc.awarded_kw > 0)]
    for vpp, rows in awarded.groupby("vpp"):
        intervals = sorted({3 * q + k for q in rows.slot.unique() for k in range(3) if 3 * q + k < 18})
        got = sorted((settled[settled.vpp == vpp].time // 300).astype(int).unique())
        assert got == intervals, vpp


def test_p2p_positions_become_dispatch_commitments(run):
    run_dir, _ = run
    trades = table(run_dir, "trades")
    l1 = trades[trades.layer == 1]
    assert len(l1) > 0, "midday with PV and batteries: peers must trade"
    assert (l1.energy_kwh > 0).all()
    steps = table(run_dir, "prosumer_steps")
    # the net position (+ bought) spread over the slot is the commitment each prosumer dispatched with
    for slot in (1, 2):
        net = (l1[l1.slot == slot].groupby("buyer").energy_kwh.sum()
               .sub(l1[l1.slot == slot].groupby("seller").energy_kwh.sum(), fill_value=0.0))
        in_slot = steps[(steps.time >= slot * 1800) & (steps.time < (slot + 1) * 1800)]
        # p2p_commit_kw follows the injection convention: + = net sold
        commit = in_slot.groupby("prosumer").p2p_commit_kw.mean() * 0.5
        for prosumer, kwh in net.items():
            assert commit[prosumer] == pytest.approx(-kwh, abs=1e-6)


def test_results_and_kpis_are_written(run):
    run_dir, figures = run
    on_disk = json.loads((run_dir / "kpis.json").read_text())
    assert on_disk == figures
    # the figures recomputed from the recorded tables (sources other than the ledger where there is one)
    trades, steps, feeder = table(run_dir, "trades"), table(run_dir, "prosumer_steps"), table(run_dir, "feeder_steps")
    anc, ledger, corrective = table(run_dir, "ancillary"), table(run_dir, "ledger"), table(run_dir, "corrective")
    settled = anc[anc.delivered_kw.notna()]
    assert ledger[ledger.counterparty == "iso"].participant.str.startswith("vpp_").all()
    expected = {
        "p2p_energy_kwh": trades[trades.layer == 1].energy_kwh.sum(),
        "l3_energy_kwh": trades[trades.layer == 3].energy_kwh.sum(),
        "penalties": settled.penalty.sum(),
        # capacity x clearing price x 5 min x performance score, per settled interval and product
        "ancillary_revenue": (settled.awarded_kw / 1000 * settled.clearing_price / 12 * settled.performance).sum(),
        "unmet_flexible_kwh": 0.0,
        "voltage_violation_minutes": 5.0 * (feeder.groupby("time").n_violations.sum() > 0).sum(),
        "losses_kwh": feeder.losses_kw.sum() * 300 / 3600,
        "peak_import_kw": feeder.groupby("time").p_head_kw.sum().max(),
        "v_max_pu": feeder.v_max_pu.max(),
        "v_min_pu": feeder.v_min_pu.min(),
        "nonconverged_steps": 0,
        "corrective_actions": len(corrective),
        "prosumers": 12,
    }
    for key, value in expected.items():
        assert on_disk[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert on_disk["ancillary_revenue"] > 0 and on_disk["p2p_energy_kwh"] > 0, "the run must trade and earn"
    assert steps.unmet_flex_kwh.sum() == 0.0


def test_a_failing_federate_stops_the_run_with_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_FAULT", "vpp_rural@1800")
    result = CliRunner().invoke(main, ["run", str(SMALL), "--out", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 1
    assert "vpp_rural" in result.output and "fault injected" in result.output
    # what was recorded before the failure is still readable
    feeder = pd.read_csv(tmp_path / "r" / "results" / "feeder_steps.csv")
    assert len(feeder) >= 2 * 6


def test_bad_scenario_exits_2_with_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nhours: 0.3\nfeeders:\n  - {name: a, master: nope.dss, colour: red}\n")
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "hours" in result.output and "colour" in result.output
    assert "Traceback" not in result.output
    assert os.path.basename(str(bad)) in result.output


def test_layer3_and_setpoints_arrive_before_their_interval_and_are_used_at_its_dispatch(run):
    run_dir, _ = run
    ex = table(run_dir, "exchange")
    for n in range(1, 18):
        signal = ex[(ex.action == "publish") & (ex.key == "iso/dispatch") & (ex.target == n)]
        orders = ex[(ex.action == "publish") & ex.key.str.endswith("/l3_orders") & (ex.target == n)]
        cleared = ex[(ex.action == "publish") & (ex.key == "vpp_market/results") & (ex.target == n)]
        setpoints = ex[(ex.action == "publish") & (_topic(ex) == "setpoints") & (ex.target == n)]
        used = ex[(ex.action == "read") & (_topic(ex) == "setpoints") & (ex.target == n)]
        # one setpoint message per prosumer federate (no community battery here: no feeder's own)
        assert len(signal) == 1 and len(orders) == 2 and len(cleared) == 1 and len(setpoints) == 4
        assert signal.time.max() < orders.time.min() <= orders.time.max() < cleared.time.min()
        assert cleared.time.max() < setpoints.time.min() and setpoints.time.max() < n * 300
        # every prosumer federate reads its setpoints exactly when the interval's dispatch starts
        assert len(used) == 4 and (used.time == n * 300).all()
