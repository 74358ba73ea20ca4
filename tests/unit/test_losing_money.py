"""harmony compare's distribution KPIs, hand-sized: ``prosumers_losing_money_pct`` (the share of prosumers who
pay MORE than a cent over the run than under top-down: who saves, who breaks even within the noise threshold,
who loses) and ``savings_gini`` (over savings shifted to be non-negative)."""

from __future__ import annotations

import pandas as pd
import pytest

from runner.compare import LOSS_THRESHOLD, comparison_kpis

NAMES = ["a", "b", "c", "d", "e"]


def _kpis(full_costs: list[float]) -> dict[str, dict]:
    top = pd.Series([1.0] * 5, index=NAMES)
    costs = {mode: top for mode in ("topdown", "netmetering", "layer1", "layer12")}
    costs["full"] = pd.Series(full_costs, index=NAMES)
    figures = {mode: {"total_cost": float(c.sum()), "penalties": 0.0} for mode, c in costs.items()}
    return comparison_kpis(figures, costs)


def test_only_those_paying_more_than_the_threshold_are_losing_money():
    assert LOSS_THRESHOLD == 0.01
    # a pays half a cent more (noise), b two and c three cents more (losing), d saves 2 cents, e breaks even
    out = _kpis([1.005, 1.02, 1.03, 0.98, 1.0])
    assert out["full"]["prosumers_losing_money_pct"] == pytest.approx(40.0)
    assert out["topdown"]["prosumers_losing_money_pct"] == 0.0


def test_savers_are_never_counted_as_losing():
    out = _kpis([0.5, 0.9, 0.98, 0.995, 1.0])
    assert out["full"]["prosumers_losing_money_pct"] == 0.0
    out = _kpis([1.5, 1.1, 1.02, 1.011, 2.0])
    assert out["full"]["prosumers_losing_money_pct"] == pytest.approx(100.0)


def test_savings_gini_is_taken_over_savings_shifted_to_be_non_negative():
    out = _kpis([1.02, 1.0, 0.98, 1.0, 1.0])
    # five prosumers: savings -2, 0, +2, 0, 0 cents -> shifted 0, 2, 4, 2, 2; sorted 0, 2, 2, 2, 4
    shifted = [0.0, 0.02, 0.02, 0.02, 0.04]
    expected = sum((2 * i - 5 - 1) * v for i, v in enumerate(shifted, start=1)) / (5 * sum(shifted))
    assert expected == pytest.approx(0.32)
    assert out["full"]["savings_gini"] == pytest.approx(expected)
    assert out["topdown"]["savings_gini"] == 0.0  # nobody saves anything against itself
