import pytest

from federates.vpp.delivery import layer3_needs, required_kw


def test_required_follows_signal_direction():
    awards = {"reg_up": 100.0, "reg_down": 80.0, "spin": 50.0}
    assert required_kw(awards, 0.5, 0.0) == pytest.approx(50.0)
    assert required_kw(awards, -0.25, 0.0) == pytest.approx(-20.0)
    assert required_kw(awards, 0.0, 1.0) == pytest.approx(50.0)


def test_shortfall_is_bought_at_the_penalty_price():
    # asked 60 kW up, members can give 40 kW, drift -5 kW: expected 35 kW, short 25 kW for 5 min
    needs = layer3_needs(60.0, 40.0, 30.0, -5.0, period_s=300, penalty_price_per_kwh=0.5,
                         spare_price_per_kwh=0.05)
    buy = [n for n in needs if n.side == "buy"]
    assert len(buy) == 1 and buy[0].direction == "up"
    assert buy[0].energy_kwh == pytest.approx(25.0 * 300 / 3600)
    assert buy[0].limit_price_per_kwh == 0.5
    # no spare up capability is offered while short up; half the 30 kW down capability is offered
    sell = [n for n in needs if n.side == "sell"]
    assert [(n.direction, round(n.energy_kwh, 6)) for n in sell] == [("down", round(15.0 / 12, 6))]


def test_spare_capability_is_offered_when_on_target():
    needs = layer3_needs(10.0, 40.0, 0.0, 0.0, period_s=300, penalty_price_per_kwh=0.5, spare_price_per_kwh=0.05)
    # 30 kW of up capability is left; half of it is offered, the rest is the VPP's own margin
    assert [(n.direction, n.side, round(n.energy_kwh * 12, 6)) for n in needs] == [("up", "sell", 15.0)]


def test_nothing_is_bought_when_nothing_is_asked():
    needs = layer3_needs(0.0, 40.0, 40.0, -15.0, period_s=300, penalty_price_per_kwh=0.5, spare_price_per_kwh=0.05)
    assert all(n.side == "sell" for n in needs)


def test_members_counter_the_drift_within_their_offer():
    from federates.vpp.delivery import member_target_kw

    assert member_target_kw(20.0, 0.0, -5.0, 40.0, 30.0) == pytest.approx(25.0)
    assert member_target_kw(20.0, 12.0, -5.0, 40.0, 30.0) == pytest.approx(13.0)  # 12 kW bought from others
    assert member_target_kw(50.0, 0.0, -5.0, 40.0, 30.0) == pytest.approx(40.0)   # capped at the offer
    assert member_target_kw(-50.0, 0.0, 0.0, 40.0, 30.0) == pytest.approx(-30.0)
