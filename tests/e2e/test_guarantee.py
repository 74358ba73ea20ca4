"""Issue #12 item 3, "nobody worse off": in every market mode the VPP's guarantee leaves no member paying more
than it pays under top-down, on the same prosumers, weather and seed (a real `harmony compare`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.compare import LOSS_THRESHOLD

pytestmark = pytest.mark.e2e
SMALL = Path(__file__).with_name("small.yaml")
MARKET_MODES = ("layer1", "layer12", "full")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("guarantee")
    result = CliRunner().invoke(main, ["compare", str(SMALL), "--out", str(out), "--hours", "2"])
    assert result.exit_code == 0, result.output
    return out


def _steps(out: Path, mode: str) -> pd.DataFrame:
    steps = pd.read_csv(out / mode / "results" / "prosumer_steps.csv")
    return steps.sort_values(["time", "prosumer"]).reset_index(drop=True)


def test_the_top_down_twin_is_the_top_down_run(compared):
    top = _steps(compared, "topdown")
    for mode in MARKET_MODES:
        twin = _steps(compared, mode)
        assert (twin.topdown_grid_kw.to_numpy() == top.grid_kw.to_numpy()).all(), mode  # bit for bit
        assert (twin.topdown_soc_kwh.to_numpy() == top.soc_kwh.to_numpy()).all(), mode


def test_nobody_pays_more_than_under_top_down(compared):
    table = pd.read_csv(compared / "comparison.csv", index_col="mode")
    assert table.loc[list(MARKET_MODES), "prosumers_losing_money_pct"].eq(0).all()
    costs = pd.read_csv(compared / "prosumer_costs.csv", index_col=0)
    for mode in MARKET_MODES:
        worse = costs[mode] - costs["topdown"]
        assert worse.max() < LOSS_THRESHOLD, mode
        # when the communities gained as a whole (the guarantee only moves money between members), not even
        # float noise above the reference; otherwise losses can stay (logged as uncovered)
        if worse.sum() <= 0:
            assert worse.max() < 1e-9, mode


def test_the_guarantee_is_financed_inside_the_community(compared):
    for mode in MARKET_MODES:
        ledger = pd.read_csv(compared / mode / "results" / "ledger.csv")
        g = ledger[ledger.item == "guarantee"]
        assert set(g.counterparty[g.participant.str.startswith("vpp_")]) <= set(g.participant), mode
        assert abs(g.amount.sum()) < 1e-12  # both sides written: the VPPs keep nothing, nobody outside pays
        members = g[~g.participant.str.startswith("vpp_")]
        assert abs(members.amount.sum()) < 1e-9  # top-ups = contributions
