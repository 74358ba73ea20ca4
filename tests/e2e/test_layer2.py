"""Layer II with the community battery on a real federation: two hours of the default day from 10:00, when the
communities are long (their PV surplus exceeds their demand), run with and without the community batteries."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from federates.common.config import load_scenario
from federates.common.helics_shell import RECORD_PAYLOADS_ENV
from runner.cli import execute

pytestmark = pytest.mark.e2e
DEFAULT = Path(__file__).resolve().parents[2] / "configs" / "scenarios" / "default.yaml"
WINDOW = ["start=2024-06-21T10:00:00", "hours=2"]
NO_BATTERY = [f"feeders.{i}.vpp.community_battery=null" for i in range(2)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, sets in (("with", WINDOW), ("without", WINDOW + NO_BATTERY)):
        run_dir = tmp_path_factory.mktemp("layer2") / name
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(RECORD_PAYLOADS_ENV, "1")
            out[name] = (run_dir, execute(load_scenario(DEFAULT, sets), run_dir, show_progress=False))
    return out


def _table(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / "results" / f"{name}.csv")


def test_every_product_is_offered_and_awarded(runs):
    run_dir, _ = runs["with"]
    anc = _table(run_dir, "ancillary")
    cleared = anc[anc["delivered_kw"].isna()]
    awarded = cleared[cleared["awarded_kw"] > 0].groupby("product").size()
    assert set(awarded.index) == {"reg_up", "reg_down", "spin"}, awarded


def test_battery_power_is_in_the_power_flow_as_dispatched(runs):
    run_dir, k = runs["with"]
    cb, steps = _table(run_dir, "community_battery"), _table(run_dir, "feeder_steps")
    assert set(cb["vpp"]) == {"vpp_suburb", "vpp_rural"} and k["community_battery_cycled_kwh"] > 1.0
    flow = steps.set_index(["time", "feeder"])["community_battery_kw"]
    dispatched = cb.set_index(["time", "feeder"])["p_kw"]
    assert flow.reindex(dispatched.index).to_numpy() == pytest.approx(dispatched.to_numpy(), abs=1e-9)
    assert (cb["soc_kwh"].between(-1e-9, cb["kwh"] + 1e-9)).all()
    # the feeder's own balance (head = loads incl. the battery + losses) was checked by the run; without the
    # battery the column is zero
    assert (_table(runs["without"][0], "feeder_steps")["community_battery_kw"] == 0).all()


def test_iso_measures_the_battery_in_the_vpps_delivery(runs):
    """delivered reg_down (kW) = max(baseline - members - battery, 0) in every settled interval, with the baseline
    the VPP published with its offers."""
    run_dir, _ = runs["with"]
    payloads = _table(run_dir, "payloads")
    offers = payloads[payloads["key"].str.endswith("/offers")]
    baseline = {(json.loads(p)["vpp"], int(t)): json.loads(p)["baseline_p_kw"]
                for p, t in zip(offers["payload"], offers["target"], strict=True)}
    steps = _table(run_dir, "feeder_steps").set_index(["feeder", "time"])
    anc = _table(run_dir, "ancillary")
    settled = anc[anc["delivered_kw"].notna() & (anc["product"] == "reg_down") & (anc["awarded_kw"] > 0)]
    assert len(settled) > 0
    for row in settled.itertuples():
        s = steps.loc[(row.vpp.removeprefix("vpp_"), row.time)]
        signed = s["members_p_kw"] + s["community_battery_kw"] - baseline[(row.vpp, row.slot)]
        assert row.delivered_kw == pytest.approx(max(-signed, 0.0), abs=1e-6)


def test_battery_energy_is_settled_and_passed_to_members(runs):
    run_dir, k = runs["with"]
    ledger = _table(run_dir, "ledger")
    energy = ledger[ledger["item"] == "community_battery_energy"]
    assert len(energy) > 0 and set(energy["counterparty"]) == {"utility"}
    assert k["money_balance_residual"] == 0.0 and k["vpp_retained"] == pytest.approx(0.0, abs=1e-9)
    per = _table(run_dir, "prosumer_kpis")
    assert per["community_battery_stored_value"].abs().sum() > 0
    expected = per["cash_cost"] - per["stored_energy_value"] - per["community_battery_stored_value"]
    assert per["total_cost"].to_numpy() == pytest.approx(expected.to_numpy())
    assert k["community_battery_stored_value"] == pytest.approx(per["community_battery_stored_value"].sum())
