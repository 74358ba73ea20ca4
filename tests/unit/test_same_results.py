"""tools/same_results.py: two runs are the same unless a simulated value differs (timing columns aside)."""

import importlib.util
import json
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(  # a script in tools/, not a package: loaded from its file
    "same_results", Path(__file__).resolve().parents[2] / "tools" / "same_results.py")
_TOOL = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_TOOL)
compare_runs = _TOOL.compare_runs

TRADES = "time,slot,layer,market,buyer,seller,energy_kwh,price_per_kwh\n"


def _run(root: Path, name: str, trades: list[str], stats: str = "1.5", wall_s: float = 10.0) -> Path:
    run = root / name
    (run / "results").mkdir(parents=True)
    (run / "results" / "trades.csv").write_text(TRADES + "".join(r + "\n" for r in trades))
    (run / "results" / "federate_stats.csv").write_text(f"time,federate,wall_s\n86400,iso,{stats}\n")
    (run / "kpis.json").write_text(json.dumps({"total_cost": 1.25, "wall_s": wall_s}))
    return run


ROWS = ["1804,2,1,vpp_a,p1,p2,0.5,0.12", "1811,7,3,vpp_market_up,vpp_a,vpp_b,0.25,0.2"]


def test_timing_columns_and_row_order_do_not_count(tmp_path):
    a = _run(tmp_path, "a", ROWS)
    # cleared at +1 and +3 instead of +4 and +11, listed in another order, other wall times
    b = _run(tmp_path, "b", ["1803,7,3,vpp_market_up,vpp_a,vpp_b,0.25,0.2", "1801,2,1,vpp_a,p1,p2,0.5,0.12"],
             stats="9.9", wall_s=3.0)
    problems, notes = compare_runs(a, b)
    assert problems == []
    assert "trades: times differ inside the tick" in notes
    assert compare_runs(a, b, exact=True)[0], "--exact counts the second inside the tick"


@pytest.mark.parametrize("row", ["1804,2,1,vpp_a,p1,p2,0.5000000000000001,0.12",  # the last digit of a value
                                 "2104,2,1,vpp_a,p1,p2,0.5,0.12"])                 # another tick
def test_a_different_value_or_tick_counts(tmp_path, row):
    a = _run(tmp_path, "a", ROWS)
    b = _run(tmp_path, "b", [row, ROWS[1]])
    problems, _ = compare_runs(a, b)
    assert problems and problems[0].startswith("trades: 1 rows only in A, 1 only in B")


def test_a_different_kpi_counts(tmp_path):
    a = _run(tmp_path, "a", ROWS)
    b = _run(tmp_path, "b", ROWS)
    (b / "kpis.json").write_text(json.dumps({"total_cost": 1.2500001, "wall_s": 10.0}))
    assert compare_runs(a, b)[0] == ["kpis.json total_cost: 1.25 vs 1.2500001"]
