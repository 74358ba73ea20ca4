"""A scenario's own load file reaches the real federation (issue #17): `harmony run` of tests/e2e/small.yaml, half
an hour top-down, with and without a constant 3 kW load file for one prosumer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from runner.cli import main

pytestmark = pytest.mark.e2e
SMALL = Path(__file__).with_name("small.yaml")      # 2024-06-21 10:00, two LV feeders, 12 prosumers
WHO = "suburb_p001"


def _steps(out: Path, *sets: str) -> pd.DataFrame:
    args = ["run", str(SMALL), "--hours", "0.5", "--mode", "topdown", "--quiet", "--out", str(out)]
    result = CliRunner().invoke(main, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    return pd.read_csv(out / "results" / "prosumer_steps.csv").sort_values(["prosumer", "time"])


def test_a_custom_load_file_is_what_that_prosumer_consumes_and_nobody_else_changes(tmp_path):
    load = tmp_path / "three_kw.csv"     # 15-minute rows: interpolated onto the 5-minute ticks
    load.write_text("time,p_kw\n2024-06-21 10:00,3\n2024-06-21 10:15,3\n2024-06-21 10:30,3\n")
    plain = _steps(tmp_path / "plain")
    custom = _steps(tmp_path / "custom", f"feeders.0.prosumers.profiles=[{{match: {WHO}, load: '{load}'}}]")
    mine = custom[custom.prosumer == WHO]
    assert len(mine) == 6 and (mine.load_kw == 3.0).all()
    assert not (plain[plain.prosumer == WHO].load_kw == 3.0).any()
    # balance of the one whose load changed: grid = pv - curtailed - load - flex + battery
    residual = mine.pv_kw - mine.curtailed_kw - mine.load_kw - mine.flex_kw + mine.battery_kw - mine.grid_kw
    assert residual.abs().max() < 1e-9
    # every other prosumer is exactly as without the file (top-down: nobody's plan depends on another's)
    cols = ["prosumer", "time", "pv_kw", "load_kw", "flex_kw", "battery_kw", "grid_kw"]
    others = [df[df.prosumer != WHO][cols].reset_index(drop=True) for df in (plain, custom)]
    pd.testing.assert_frame_equal(*others)
