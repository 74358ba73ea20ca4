"""Issue: a high-PV feeder breaks 1.05 pu without the VPP's corrective setpoints and stays within it with them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from federates.common.config import load_scenario
from runner.cli import execute

pytestmark = pytest.mark.e2e
HIGH_PV = Path(__file__).with_name("high_pv.yaml")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for corrective in (False, True):
        sc = load_scenario(HIGH_PV, [f"feeders.0.vpp.corrective={str(corrective).lower()}"])
        run_dir = tmp_path_factory.mktemp("pv") / f"corrective_{corrective}"
        execute(sc, run_dir, show_progress=False)
        out[corrective] = run_dir
    return out


def test_corrective_setpoints_keep_the_feeder_within_ansi_range_a(runs):
    without = pd.read_csv(runs[False] / "results" / "feeder_steps.csv")
    with_ = pd.read_csv(runs[True] / "results" / "feeder_steps.csv")
    assert without.v_max_pu.max() > 1.05, "the scenario must be one that needs correcting"
    assert with_.converged.all() and with_.v_max_pu.max() <= 1.05
    assert (with_.n_violations == 0).all()


def test_what_was_asked_and_what_happened_is_recorded(runs):
    corrective = pd.read_csv(runs[True] / "results" / "corrective.csv")
    assert (corrective.kind == "cap_export").any()
    steps = pd.read_csv(runs[True] / "results" / "prosumer_steps.csv")
    volts = pd.read_csv(runs[True] / "results" / "voltages.csv")
    # every cap was asked of a member whose service voltage was high at that moment, and afterwards the
    # member exported no more than its cap (battery charged, flexible load pulled forward, or PV curtailed)
    for _, cap in corrective[corrective.kind == "cap_export"].iterrows():
        v = volts[(volts.prosumer == cap.prosumer) & (volts.time == cap.time)].v_pu.iloc[0]
        assert v >= 1.04 - 1e-9
        nxt = steps[(steps.prosumer == cap.prosumer) & (steps.time == cap.time + 300)]
        if len(nxt):
            assert nxt.grid_kw.iloc[0] <= cap.max_export_kw + 1e-6
    assert steps.curtailed_kw.sum() >= 0 and steps.unmet_flex_kwh.sum() == 0
