"""The VPP's real-time bookkeeping by hand: members' asks, what each can deliver, the split of what is asked of
them into setpoints and what it pays them for delivering (``federates.vpp.platform``)."""

from __future__ import annotations

import pytest

from federates.common.config import MarketConfig, VppConfig
from federates.common.messages import MemberPlan, SetpointMsg
from federates.prosumer.devices import TariffConfig, TouPeriod
from federates.vpp.platform import EXPECTED_DEPLOYMENT, CommunityVpp


def _vpp() -> CommunityVpp:
    """Three members; slot 24 (12:00-12:30, retail 0.18, export credit 0.04): a exports then imports and values
    energy at 0.05 $/kWh, b imports then exports at 0.25 $/kWh, c has no plan."""
    tou = [TouPeriod(start_h=h, price_per_kwh=c) for h, c in ((0, 0.12), (7, 0.18), (17, 0.30))]
    vpp = CommunityVpp(name="vpp_f", members={"a": "pf0", "b": "pf0", "c": "pf1"}, market=MarketConfig(),
                       config=VppConfig(), tariff=TariffConfig(retail_tou=tou, buyback_price_per_kwh=0.04),
                       penalty_multiplier=10.0)
    vpp.take_plans([MemberPlan(member="a", slot=24, planned_p_kw=(10.0, -5.0), up_kw=10.0, down_kw=6.0,
                               price_per_kwh=0.05),
                    MemberPlan(member="b", slot=24, planned_p_kw=(-3.0, 4.0), up_kw=10.0, down_kw=2.0,
                               price_per_kwh=0.25)])
    return vpp


def test_members_asks_follow_the_compensation_rule():
    vpp = _vpp()
    first, second = vpp.member_flex(48, hour=12.0), vpp.member_flex(49, hour=12.0)
    assert [f.member for f in first] == ["a", "b"]
    # up: lambda - export credit; down: (export credit if exporting, else retail) - lambda; x expected deployment
    assert first[0].price_per_kwh == pytest.approx((0.05 - 0.04) * EXPECTED_DEPLOYMENT)
    assert first[0].down_ask_per_kwh == 0.0 and first[0].planned_p_kw == 10.0          # exporting: 0.04 < 0.05
    assert second[0].down_ask_per_kwh == pytest.approx((0.18 - 0.05) * EXPECTED_DEPLOYMENT)
    assert second[0].planned_p_kw == -5.0
    assert first[1].price_per_kwh == pytest.approx(0.21 * EXPECTED_DEPLOYMENT) and first[1].down_ask_per_kwh == 0.0
    assert second[1].down_ask_per_kwh == 0.0                                           # exporting: 0.04 < 0.25
    plain = vpp.member_flex(48)
    assert plain[1].price_per_kwh == plain[1].down_ask_per_kwh == pytest.approx(0.25 * EXPECTED_DEPLOYMENT)


def test_activation_costs_by_hand():
    vpp = _vpp()
    # interval 144 is in the slot's first half (a exports, b imports), interval 147 in its second half
    assert vpp.activation_costs(144, {"a": 2.0, "b": 1.0, "c": 1.0}, 12.0) == pytest.approx(
        {"a": 0.01, "b": 0.21, "c": 0.0})
    assert vpp.activation_costs(145, {"a": -1.0, "b": -1.0}, 12.0) == {"a": 0.0, "b": 0.0}
    assert vpp.activation_costs(147, {"a": -1.0, "b": -1.0}, 12.0) == pytest.approx({"a": 0.13, "b": 0.0})
    assert vpp.activation_cost(147, "a", -1.0, 12.0) == pytest.approx(0.13)
    assert vpp.activation_costs(147, {"a": -1.0}, 20.0) == pytest.approx({"a": 0.30 - 0.05})   # retail at 20:00


def test_capability_setpoints_and_target_by_hand():
    vpp = _vpp()
    interval = 144
    vpp.headroom_up_kw["a"] = 4.0                       # a's battery can give only 4 kW more now
    vpp.guard.import_cap_kw["a"] = 2.0                  # a imports 1 kW under a 2 kW cap: 1 kW less at most
    vpp.guard.export_cap_kw["b"] = 8.0                  # b exports 5 kW under an 8 kW cap: 3 kW more at most
    vpp.guard.import_cap_kw["c"] = 1.5                  # c has no plan: no flexibility, but its caps stand
    vpp.guard.export_cap_kw["c"] = 0.5
    vpp.last_p_kw = {"a": -1.0, "b": 5.0}
    up, down = vpp.member_capability(interval)
    assert up == {"a": 4.0, "b": 3.0} and down == {"a": 1.0, "b": 2.0}
    assert vpp.capability(interval) == (7.0, 3.0)
    asked, setpoints = vpp.dispatch_members(interval, required=10.0, credit_kw=0.0)
    assert asked == 7.0 == vpp.member_target(interval, 10.0, 0.0)            # all they can give
    assert setpoints == vpp.setpoints(interval, 7.0) == {
        "a": SetpointMsg(delta_p_kw=4.0, max_import_kw=2.0), "b": SetpointMsg(delta_p_kw=3.0, max_export_kw=8.0),
        "c": SetpointMsg(max_export_kw=0.5, max_import_kw=1.5)}
    assert list(setpoints) == ["a", "b", "c"]                                # the members' order
    asked, setpoints = vpp.dispatch_members(interval, required=-1.0, credit_kw=0.5)
    assert asked == pytest.approx(-1.5)                                      # down, split pro rata 1 : 2
    assert setpoints["a"].delta_p_kw == pytest.approx(-0.5) and setpoints["b"].delta_p_kw == pytest.approx(-1.0)
    asked, setpoints = vpp.dispatch_members(interval, required=0.0, credit_kw=0.0)
    assert asked == 0.0 and setpoints == {"a": SetpointMsg(delta_p_kw=0.0, max_import_kw=2.0),
                                          "b": SetpointMsg(delta_p_kw=0.0, max_export_kw=8.0),
                                          "c": SetpointMsg(max_export_kw=0.5, max_import_kw=1.5)}


def test_spare_capability_is_offered_at_the_members_flexibility_weighted_value():
    vpp = _vpp()
    # value above the buy-back rate (0.04), weighted by offered up + down kW: a 0.01 x 16, b 0.21 x 12
    sell = {n.direction: n for n in vpp.layer3_needs(144, 0.0, 20.0)}
    assert sell["up"].side == "sell" and sell["up"].energy_kwh == pytest.approx(0.5 * 20.0 / 12)
    assert sell["up"].limit_price_per_kwh == pytest.approx((0.01 * 16 + 0.21 * 12) / 28 + 0.01)
    # new plans for the slot (same members): the price follows them
    vpp.take_plans([MemberPlan(member="b", slot=24, planned_p_kw=(-3.0, 4.0), up_kw=10.0, down_kw=2.0,
                               price_per_kwh=0.45)])
    sell = {n.direction: n for n in vpp.layer3_needs(145, 0.0, 20.0)}
    assert sell["up"].limit_price_per_kwh == pytest.approx((0.01 * 16 + 0.41 * 12) / 28 + 0.01)
