"""ISO settlement: signals, performance score, penalty and one interval settled by hand."""

from __future__ import annotations

import numpy as np
import pytest

from federates.common.errors import SettlementError
from federates.iso.settlement import (
    penalty,
    performance,
    regulation_signal,
    required_kw,
    reserve_events,
    settle_interval,
)


def test_regulation_signal_is_seeded_bounded_and_two_sided():
    s = regulation_signal(3, 288)
    assert s.shape == (288,)
    assert np.array_equal(s, regulation_signal(3, 288)) and not np.array_equal(s, regulation_signal(4, 288))
    assert s.min() >= -1.0 and s.max() <= 1.0
    assert (s > 0.2).any() and (s < -0.2).any()


def test_reserve_events_last_their_duration():
    e = reserve_events(1, 2000, probability_per_step=0.02, duration_steps=3)
    assert np.array_equal(e, reserve_events(1, 2000, probability_per_step=0.02, duration_steps=3))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], e.astype(int), [0]])))
    runs = edges[1::2] - edges[::2]
    assert len(runs) > 5 and all(r % 3 == 0 for r in runs[:-1])  # back-to-back events join into 6, 9, ...
    assert not reserve_events(1, 100, probability_per_step=0.0).any()


def test_performance_score():
    assert performance([50, 50], [50, 50]) == 1.0
    assert performance([50, 50], [25, 25]) == pytest.approx(0.5)
    assert performance([50, 50], [75, 75]) == pytest.approx(0.5)  # over-delivery is an error too
    assert performance([10], [100]) == 0.0
    assert performance(0.0, 5.0) == 1.0  # nothing asked
    with pytest.raises(SettlementError):
        performance([1, 2], [1])


def test_penalty_rule_by_hand():
    # 100 kW short at 20 $/MW-h for 5 min, multiplier 2: 0.1 MW * 20 * 2 * (1/12) h
    assert penalty(100, 20, 300, 2) == pytest.approx(0.1 * 20 * 2 / 12)
    with pytest.raises(SettlementError):
        penalty(-1, 20, 300, 2)


def test_required_kw_follows_signal_direction():
    awards = {"reg_up": 100.0, "reg_down": 80.0, "spin": 50.0}
    assert required_kw(awards, 0.5, False) == {"reg_up": 50.0, "reg_down": 0.0, "spin": 0.0}
    assert required_kw(awards, -0.25, True) == {"reg_up": 0.0, "reg_down": 20.0, "spin": 50.0}


def test_unit_example_from_the_brief():
    # 1 $/MW-h on 100 kW for 15 min = 0.1 MW * 0.25 h * 1 = $0.025
    s = settle_interval({"spin": 100}, {"spin": 1.0}, {}, {}, period_s=900)
    assert s.total_capacity_payment == pytest.approx(0.025) and s.net == pytest.approx(0.025)


def test_settle_interval_by_hand():
    s = settle_interval({"reg_up": 100, "reg_down": 50}, {"reg_up": 12.0, "reg_down": 6.0},
                        required_kw={"reg_up": 50.0}, delivered_kw={"reg_up": 40.0},
                        period_s=300, penalty_multiplier=2.0)
    assert s.capacity_payment == pytest.approx({"reg_up": 0.1 * 12 / 12, "reg_down": 0.05 * 6 / 12})
    assert s.performance_score == pytest.approx({"reg_up": 0.8, "reg_down": 1.0})
    assert s.shortfall_kw == pytest.approx({"reg_up": 10.0, "reg_down": 0.0})
    assert s.penalty["reg_up"] == pytest.approx(0.01 * 12 * 2 / 12)
    assert s.net == pytest.approx(0.1 * 0.8 + 0.025 - 0.02)


def test_settle_rejects_award_without_price():
    with pytest.raises(SettlementError, match="spin"):
        settle_interval({"spin": 10}, {"reg_up": 1.0}, {}, {})
