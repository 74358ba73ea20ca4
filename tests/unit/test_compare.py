import numpy as np
import pandas as pd
import pytest

from runner.compare import COLUMNS, comparison_kpis, gini, savings_pct


def test_gini_known_values():
    assert gini(np.array([1.0, 1.0, 1.0])) == pytest.approx(0.0)
    assert gini(np.array([0.0, 0.0, 3.0])) == pytest.approx(2.0 / 3.0)
    assert gini(np.array([])) == 0.0


def test_savings_and_losers_against_topdown():
    modes = ("topdown", "netmetering", "layer1", "layer12", "full")
    costs = {"topdown": pd.Series({"a": 10.0, "b": 20.0}), "netmetering": pd.Series({"a": 8.0, "b": 18.0}),
             "layer1": pd.Series({"a": 9.0, "b": 21.0}), "layer12": pd.Series({"a": 9.0, "b": 19.0}),
             "full": pd.Series({"a": 8.5, "b": 19.0})}
    figures = {m: {"total_cost": float(costs[m].sum()), "penalties": 0.0} for m in modes}
    figures["layer12"]["penalties"], figures["full"]["penalties"] = 2.0, 0.5
    out = comparison_kpis(figures, costs)
    assert out["full"]["savings_vs_topdown_pct"] == pytest.approx(100 * (30 - 27.5) / 30)
    assert out["full"]["savings_vs_netmetering_pct"] == pytest.approx(100 * (26 - 27.5) / 26)
    assert out["layer1"]["prosumers_losing_money_pct"] == pytest.approx(50.0)  # b pays 21 > 20
    assert out["full"]["prosumers_losing_money_pct"] == pytest.approx(0.0)
    assert out["full"]["penalties_avoided"] == pytest.approx(1.5)
    assert out["topdown"]["savings_vs_topdown_pct"] == 0.0
    assert savings_pct(-10.0, -12.0) == pytest.approx(20.0)  # a negative cost (net income) that grows saves


def test_losers_are_judged_on_total_cost_with_stored_energy():
    # b's cash bill is lower in layer1, but it drained its battery: its total_cost (cash - stored value) is higher
    modes = ("topdown", "netmetering", "layer1", "layer12", "full")
    cash = {"a": 10.0, "b": 19.5}
    stored_value = {"topdown": {"a": 0.0, "b": 0.0}, "layer1": {"a": 0.0, "b": -1.0}}
    costs = {m: pd.Series({p: cash[p] - stored_value.get(m, stored_value["topdown"])[p] for p in cash})
             for m in modes}
    costs["topdown"]["b"] = 20.0
    figures = {m: {"total_cost": float(costs[m].sum()), "penalties": 0.0} for m in modes}
    out = comparison_kpis(figures, costs)
    assert out["layer1"]["prosumers_losing_money_pct"] == pytest.approx(50.0)  # b: 20.5 > 20
    assert out["full"]["prosumers_losing_money_pct"] == pytest.approx(0.0)  # b: 19.5 < 20


def test_comparison_table_shows_the_new_kpis():
    for key in ("cash_cost", "stored_energy_change_kwh", "stored_energy_value", "self_sufficiency_prosumer_pct",
                "self_consumption_prosumer_pct", "self_sufficiency_pct", "self_consumption_pct"):
        assert key in COLUMNS
