"""The report of a real short run (the shared run of tests/e2e/small.yaml): every figure, every key defined, and the
figures' data checked against what the run recorded and settled."""

from __future__ import annotations

import html
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federates.common.config import load_scenario
from federates.feeder.model import FeederModel
from runner import ledger as led
from runner import storage
from runner.report import FIGURES, THEMES, kpi_meaning, kpi_theme, load_run, write_report

pytestmark = pytest.mark.e2e
SMALL = Path(__file__).with_name("small.yaml")


@pytest.fixture(scope="module")
def reported(small_run, tmp_path_factory) -> tuple[Path, dict, str]:
    """A copy of the shared run (the report writes into its folder) and its report."""
    run_dir, kpis = small_run
    copy = tmp_path_factory.mktemp("report") / "small"
    shutil.copytree(run_dir / "results", copy / "results")
    shutil.copytree(run_dir / "federates", copy / "federates")
    shutil.copy(run_dir / "kpis.json", copy / "kpis.json")
    return copy, kpis, write_report(copy).read_text(encoding="utf-8")


def test_every_figure_of_a_real_run_is_drawn_and_every_key_defined(reported):
    run_dir, kpis, text = reported
    assert text.count("<img") == len(FIGURES)
    for spec in FIGURES:
        assert (run_dir / "figures" / f"{spec.name}.png").stat().st_size > 5000, spec.name
    plain = html.unescape(text)
    for key in kpis:
        assert kpi_theme(key) in THEMES, f"{key} has no theme"
        assert kpi_meaning(key), f"{key} has no definition"
        assert f"<td>{key}</td>" in plain
    assert "(no definition)" not in plain and "id='kpi-other'" not in plain
    assert "Layer I market per feeder: rural sdr, suburb auction" in plain


def test_bills_are_the_ledger_and_the_top_down_twin_is_the_guarantee_reference(reported):
    run_dir, _, _ = reported
    data = load_run(run_dir)
    per = data.per_prosumer.set_index("prosumer")
    run_bills = data.bills["full"]
    np.testing.assert_allclose(run_bills.sum(axis=1), per["total_cost"].reindex(run_bills.index), atol=1e-9)
    assert (run_bills["share_ancillary"] < 0).any(), "the members' share of the ancillary income is an income"
    steps, ledger = data.frames["prosumer_steps"], data.frames["ledger"]
    _, reference = led.guarantee_costs(ledger, steps, data.tariff, data.start, storage.efficiencies(run_dir, steps))
    twin = data.bills["topdown"]
    assert "top-down twin" in data.bills_note
    np.testing.assert_allclose(twin.sum(axis=1), reference.reindex(twin.index).astype(float), atol=1e-9)
    long = pd.read_csv(run_dir / "figures" / "prosumer_bills.csv")
    assert set(long["mode"]) == {"full", "topdown"}
    assert long[long["mode"] == "full"].groupby("prosumer")["cost"].sum().to_dict() == \
        pytest.approx(per["total_cost"].to_dict())


def test_placement_records_each_prosumers_distance_from_the_source(reported):
    run_dir, _, _ = reported
    placement = pd.read_csv(run_dir / "results" / "placement.csv")
    prosumers = placement[placement["prosumer"].notna()]
    assert len(prosumers) == 12 and prosumers["distance_km"].between(0.001, 2.0).all()
    scenario = load_scenario(SMALL)
    for feeder in scenario.feeders:
        model = FeederModel(feeder.master)
        try:
            km = model.load_distances_km()
        finally:
            model.close()
        mine = placement[placement["feeder"] == feeder.name]
        expected = {load: round(km[load], 6) for load in mine["load"]}
        assert mine.set_index("load")["distance_km"].to_dict() == pytest.approx(expected)
    profile = pd.read_csv(run_dir / "figures" / "voltage_profile.csv")
    assert profile["distance_km"].notna().all() and len(profile) == 12
    assert (profile["v_min_pu"] <= profile["v_at_low_pu"]).all()
    assert (profile["v_at_high_pu"] <= profile["v_max_pu"]).all()


def test_required_kw_is_what_the_iso_scored(reported):
    run_dir, _, _ = reported
    anc = pd.read_csv(run_dir / "results" / "ancillary.csv")
    delivered = anc[anc["offer_price"].isna() & anc["delivered_kw"].notna()]
    assert len(delivered) and delivered["required_kw"].notna().all()
    assert delivered["required_kw"].le(delivered["awarded_kw"] + 1e-9).all(), "never more than the award"
    # the ISO's score of one 5-minute sample: 1 - |delivered - required| / required (1 when nothing was asked)
    asked = delivered[delivered["required_kw"] > 1e-9]
    score = (1 - (asked["delivered_kw"] - asked["required_kw"]).abs() / asked["required_kw"]).clip(lower=0)
    np.testing.assert_allclose(score, asked["performance"], atol=1e-9)
    summary = pd.read_csv(run_dir / "figures" / "ancillary.csv")
    assert math.isclose(summary["penalty"].sum(), delivered["penalty"].sum(), abs_tol=1e-12)
