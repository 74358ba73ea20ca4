"""Layer II: VPP aggregation, disaggregation, revenue sharing and the bidding MILP."""

from __future__ import annotations

import math

import numpy as np
import pytest

from federates.common.errors import ConfigError, SettlementError
from federates.vpp.aggregation import MemberFlex, disaggregate, overflow_kw, share_revenue
from federates.vpp.ancillary_bidding import (
    BATTERY,
    PRODUCTS,
    REG_DEPLOYMENT,
    SPIN_DEPLOYMENT,
    BiddingInput,
    OfferModel,
    battery_margin_per_kwh,
    decide_offers,
    physical_capacity_kw,
)

FORECAST = {"reg_up": 20.0, "spin": 15.0, "reg_down": 6.0}


# --- aggregation -------------------------------------------------------------------------------------

def test_overflow_is_sum_of_planned_injection():
    members = [MemberFlex("a", 0, 0, 0, 4.5), MemberFlex("b", 0, 0, 0, -7.0), MemberFlex("c", 0, 0, 0, 1.0)]
    assert overflow_kw(members) == pytest.approx(-1.5)


def test_member_flex_problems_name_every_bad_field():
    good = MemberFlex("a", 1.0, 2.0, 0.01, -3.0, 0.02)
    assert good.problems() == [] and MemberFlex("b", 0.0, 0.0, 0.0, 0.0).problems() == []
    for field, bad in [(f, v) for f in ("up_kw", "down_kw", "price_per_kwh", "down_price_per_kwh")
                       for v in (-1.0, math.nan, math.inf)] + [("planned_p_kw", v) for v in (math.nan, math.inf,
                                                                                                -math.inf)]:
        problems = good._replace(**{field: bad}).problems()
        assert len(problems) == 1 and field in problems[0], (field, bad)


def test_disaggregate_pro_rata_and_capped():
    assert disaggregate(50, {"a": 60, "b": 40}) == pytest.approx({"a": 30.0, "b": 20.0})
    assert disaggregate(500, {"a": 60, "b": 40}) == {"a": 60.0, "b": 40.0}
    assert disaggregate(10, {"a": 0.0}) == {"a": 0.0}
    rng = np.random.default_rng(5)
    for _ in range(50):
        offers = {f"m{i}": float(v) for i, v in enumerate(rng.uniform(0, 30, 7))}
        award = float(rng.uniform(0, 250))
        shares = disaggregate(award, offers)
        assert all(shares[k] <= offers[k] for k in offers)
        assert sum(shares.values()) == pytest.approx(min(award, sum(offers.values())), abs=1e-9)
    with pytest.raises(SettlementError):
        disaggregate(10, {"a": -1.0})


def test_share_revenue_passes_every_cent_back_minus_fee():
    assert share_revenue(10.0, {"a": 30, "b": 10}, fee_fraction=0.1) == pytest.approx({"a": 6.75, "b": 2.25})
    assert share_revenue(3.0, {"a": 0, "b": 0, "c": 0}, fee_fraction=0.0) == pytest.approx(
        {"a": 1.0, "b": 1.0, "c": 1.0})
    rng = np.random.default_rng(11)
    for _ in range(50):
        contributions = {f"m{i}": float(v) for i, v in enumerate(rng.uniform(0, 50, 13))}
        revenue, fee = float(rng.uniform(-5, 500)), float(rng.uniform(0, 0.3))
        shares = share_revenue(revenue, contributions, fee_fraction=fee)
        assert abs(math.fsum(shares.values()) - revenue * (1 - fee)) <= 1e-9
    with pytest.raises(SettlementError):
        share_revenue(1.0, {"a": 1}, fee_fraction=1.0)


# --- bidding -----------------------------------------------------------------------------------------

def test_hand_case_known_optimum():
    # value = forecast * (1 - 0.05 * 3) = 0.85 forecast: reg_up 17, spin 12.75, reg_down 5.1 $/MW-h.
    # a (ask 4): reg_up (17-4) beats spin; c (ask 13): reg_up only (17 > 13 > 12.75); d (ask 2): reg_down.
    members = [MemberFlex("a", 80, 0, 0.004, 3.0), MemberFlex("c", 70, 120, 0.013, -1.0),
               MemberFlex("d", 0, 150, 0.002, 5.0)]
    d = decide_offers(BiddingInput(members, FORECAST, retail_per_kwh=0.1))
    assert d.offers_kw == pytest.approx({"reg_up": 150.0, "reg_down": 150.0, "spin": 0.0})
    assert d.contributions_kw["reg_up"] == pytest.approx({"a": 80.0, "c": 70.0})
    assert d.contributions_kw["reg_down"] == pytest.approx({"d": 150.0}) and d.contributions_kw["spin"] == {}
    assert d.offer_price_per_mw_h == pytest.approx({"reg_up": (80 * 4 + 70 * 13) / 150, "reg_down": 2.0,
                                                    "spin": 0.0})
    assert d.export_kw == pytest.approx(7.0)
    assert d.expected_income == pytest.approx((150 * 17 + 150 * 5.1) / 1000 * 0.25)


def test_battery_repositions_to_open_the_valuable_direction():
    # full 100 kWh / 50 kW lossless battery valued at 0.1 $/kWh, export credit 0.1: discharging costs nothing,
    # so to offer reg_down (value 22.1 $/MW-h) it discharges 50 kW as baseline (exported: dis_x) and offers 50 kW.
    inp = BiddingInput([], {"reg_up": 20.0, "reg_down": 26.0}, 0.1, export_per_kwh=0.1, battery_kwh=100,
                       battery_p_kw=50, battery_soc_kwh=100, min_offer_kw=0)
    d = decide_offers(inp)
    assert d.offers_kw == pytest.approx({"reg_up": 0.0, "reg_down": 50.0, "spin": 0.0})
    assert d.contributions_kw["reg_down"] == pytest.approx({BATTERY: 50.0})
    assert d.export_kw == pytest.approx(50.0) and d.down_capacity_kw == pytest.approx(50.0)
    assert d.battery_baseline_kw == pytest.approx(50.0)


# the default tariff's numbers: w = 0.18 stored, export credit 0.04, retail 0.18 (day) / 0.30 (peak)
TARIFF = dict(export_per_kwh=0.04, stored_value_per_kwh=0.18, eta_charge=0.95, eta_discharge=0.95)
PRICES = {"reg_up": 20.0, "reg_down": 5.8, "spin": 11.0}
BAT = dict(battery_kwh=100.0, battery_p_kw=50.0, min_offer_kw=50.0, delivery_risk=0.02, penalty_multiplier=10.0)


def test_battery_margins_by_hand():
    long = BiddingInput([MemberFlex("a", 0, 0, 0.0, 10.0)], PRICES, 0.18, **TARIFF)
    g = battery_margin_per_kwh(long)
    # long: an absorbed kWh would have been exported at 0.04 and is worth 0.18 x 0.95 in storage
    assert g["reg_down"] == pytest.approx(REG_DEPLOYMENT * (0.18 * 0.95 - 0.04))
    assert g["reg_up"] == pytest.approx(REG_DEPLOYMENT * (0.04 - 0.18 / 0.95))
    assert g["spin"] == pytest.approx(SPIN_DEPLOYMENT * (0.04 - 0.18 / 0.95))
    short = BiddingInput([MemberFlex("a", 0, 0, 0.0, -10.0)], PRICES, 0.30, **TARIFF)
    g = battery_margin_per_kwh(short)
    assert g["reg_up"] == pytest.approx(REG_DEPLOYMENT * (0.30 - 0.18 / 0.95))
    assert g["reg_down"] == pytest.approx(REG_DEPLOYMENT * (0.18 * 0.95 - 0.30))


def test_long_community_offers_energy_backed_reg_down():
    # 30 kW surplus, members who would only forgo the export credit when absorbing (down ask 0) and ask 30 $/MW-h
    # for up; an empty battery cannot back spin; reg_down from members' 40 kW + battery 50 kW room is offered.
    members = [MemberFlex(f"m{i}", 10.0, 10.0, 0.030, 7.5, down_price_per_kwh=0.0) for i in range(4)]
    d = decide_offers(BiddingInput(members, PRICES, 0.18, battery_soc_kwh=0.0, **TARIFF, **BAT))
    assert d.offers_kw["reg_down"] >= 50.0 and d.offers_kw["reg_up"] == 0.0
    assert d.contributions_kw["reg_down"].get(BATTERY, 0.0) > 0
    assert d.offer_price_per_mw_h["reg_down"] == 0.0


def test_stored_energy_backs_spin_and_the_peak_backs_reg_up():
    full_long = BiddingInput([MemberFlex("a", 0, 0, 0.0, 0.0)], PRICES, 0.18, battery_soc_kwh=90.0, **TARIFF, **BAT)
    d = decide_offers(full_long)
    assert d.offers_kw["spin"] == pytest.approx(50.0) and d.contributions_kw["spin"] == {BATTERY: 50.0}
    # spin's ask is the battery's expected energy cost: d_spin (w / eta_d - r_out) x 1000 $/MW-h, r_out = export
    assert d.offer_price_per_mw_h["spin"] == pytest.approx(SPIN_DEPLOYMENT * (0.18 / 0.95 - 0.04) * 1000)
    peak = BiddingInput([MemberFlex("a", 0, 0, 0.0, -60.0)], PRICES | {"reg_up": 200.0}, 0.30, battery_soc_kwh=90.0,
                        **TARIFF, **BAT)
    d = decide_offers(peak)
    assert d.offers_kw["reg_up"] >= 50.0 and d.contributions_kw["reg_up"].get(BATTERY, 0.0) > 0


def test_persistent_model_matches_a_fresh_one_slot_after_slot():
    rng = np.random.default_rng(5)
    names = [f"m{i}" for i in range(6)]
    model = OfferModel(names)
    built = None
    for _ in range(8):
        members = [MemberFlex(n, float(rng.uniform(0, 30)), float(rng.uniform(0, 30)), float(rng.uniform(0, 0.03)),
                              float(rng.uniform(-10, 10)), float(rng.uniform(0, 0.03)))
                   for n in names if rng.random() < 0.8]
        inp = BiddingInput(members, {p: float(rng.uniform(0, 30)) for p in PRODUCTS}, float(rng.choice([0.12, 0.3])),
                           battery_soc_kwh=float(rng.uniform(0, 100)), **TARIFF, **BAT)
        kept, fresh = model.decide(inp), decide_offers(inp)
        built = built or model.highs
        assert model.highs is built
        assert kept.expected_income == pytest.approx(fresh.expected_income, abs=1e-6)
        assert kept.offers_kw == pytest.approx(fresh.offers_kw, abs=1e-6)


def test_min_offer_size_gives_zero_with_60_kw():
    members = [MemberFlex("a", 30, 30, 0.0, 0.0), MemberFlex("b", 30, 30, 0.0, 0.0)]
    d = decide_offers(BiddingInput(members, FORECAST, 0.1, min_offer_kw=100))
    assert d.offers_kw == {p: 0.0 for p in PRODUCTS} and d.expected_income == 0.0
    d = decide_offers(BiddingInput(members, FORECAST, 0.1, min_offer_kw=50))
    assert d.offers_kw["reg_up"] == pytest.approx(60.0) and d.offers_kw["reg_down"] == pytest.approx(60.0)


def test_no_offer_when_expected_penalty_eats_the_price():
    members = [MemberFlex("a", 300, 300, 0.0, 0.0)]
    d = decide_offers(BiddingInput(members, FORECAST, 0.1, delivery_risk=0.4, penalty_multiplier=2.0))
    assert d.offers_kw == {p: 0.0 for p in PRODUCTS}


def _random_input(rng: np.random.Generator) -> BiddingInput:
    n = int(rng.integers(1, 12))
    members = [MemberFlex(f"m{i}", float(rng.uniform(0, 40)), float(rng.uniform(0, 40)),
                          float(rng.uniform(0, 0.03)), float(rng.uniform(-5, 5))) for i in range(n)]
    e_kwh = float(rng.choice([0.0, 50.0, 200.0]))
    forecast = {p: float(rng.uniform(0, 40)) for p in PRODUCTS}
    soc_kwh, min_kw = float(rng.uniform(0, e_kwh)), float(rng.choice([0, 100]))
    return BiddingInput(members, forecast, 0.08, export_per_kwh=float(rng.choice([0.04, 0.08])),
                        battery_kwh=e_kwh, battery_p_kw=e_kwh / 2, battery_soc_kwh=soc_kwh, min_offer_kw=min_kw)


def test_never_offers_more_than_members_and_battery_can_deliver():
    rng = np.random.default_rng(2024)
    for _ in range(25):
        inp = _random_input(rng)
        d = decide_offers(inp)
        b = d.export_kw - overflow_kw(inp.members)   # battery baseline, recomputed
        h = inp.slot_s / 3600
        assert -inp.battery_p_kw - 1e-6 <= b <= inp.battery_p_kw + 1e-6
        assert -1e-6 <= inp.battery_soc_kwh - b * h <= inp.battery_kwh + 1e-6
        up = sum(m.up_kw for m in inp.members) + min(inp.battery_p_kw - b, inp.battery_soc_kwh / h - b)
        down = (sum(m.down_kw for m in inp.members)
                + min(inp.battery_p_kw + b, (inp.battery_kwh - inp.battery_soc_kwh) / h + b))
        assert d.offers_kw["reg_up"] + d.offers_kw["spin"] <= up + 1e-6
        assert d.offers_kw["reg_down"] <= down + 1e-6
        assert (d.up_capacity_kw, d.down_capacity_kw) == pytest.approx(physical_capacity_kw(inp, b))
        for m in inp.members:
            assert sum(d.contributions_kw[p].get(m.member, 0) for p in ("reg_up", "spin")) <= m.up_kw + 1e-6
            assert d.contributions_kw["reg_down"].get(m.member, 0) <= m.down_kw + 1e-6
        for p in PRODUCTS:
            assert d.offers_kw[p] == pytest.approx(sum(d.contributions_kw[p].values()), abs=1e-6)
            assert d.offers_kw[p] <= 1e-6 or d.offers_kw[p] >= inp.min_offer_kw - 1e-6
            assert 0 <= d.offer_price_per_mw_h[p] <= inp.price_forecast_per_mw_h[p] + 1e-9


def test_award_flows_back_to_members_exactly():
    members = [MemberFlex("a", 80, 0, 0.004, 0.0), MemberFlex("c", 70, 0, 0.013, 0.0)]
    d = decide_offers(BiddingInput(members, FORECAST, 0.1))
    award_kw = 120.0
    shares_kw = disaggregate(award_kw, d.contributions_kw["reg_up"])
    assert shares_kw == pytest.approx({"a": 64.0, "c": 56.0})
    revenue = award_kw / 1000 * 18.0 * 0.25   # cleared at 18 $/MW-h for the slot
    money = share_revenue(revenue, shares_kw, fee_fraction=0.05)
    assert abs(math.fsum(money.values()) - revenue * 0.95) <= 1e-9


def test_invalid_bidding_input_lists_every_problem():
    members = [MemberFlex("a", -1, 0, 0.0, 0.0), MemberFlex("a", 1, 0, 0.0, 0.0)]
    with pytest.raises(ConfigError) as info:
        decide_offers(BiddingInput(members, {"regup": 3.0}, 0.1, battery_kwh=10, battery_soc_kwh=20))
    assert len(info.value.problems) == 4
    assert "battery_soc_kwh" in str(info.value) and "'regup'" in str(info.value)
