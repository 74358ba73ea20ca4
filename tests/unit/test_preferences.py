"""Prosumer preferences in the bilateral market (product differentiation, issue #15 item 3): hand-sized books
where a stated premium changes who trades with whom, in the LP and in ADMM, and the scenario fields that state
premia, resolved per pair and carried by the VPP platform into the clearing.

The hand case (price band [0.05, 0.30] $/kWh, no network charges)::

    buyer  bob    4 kWh, limit 0.20        seller  nina  6 kWh, ask 0.12   (bob's neighbour, has PV)
    (buyer amy    4 kWh, limit 0.20)       seller  sam   6 kWh, ask 0.10

Without preferences bob buys from sam, the cheaper seller: surplus 0.20 - 0.10 = 0.10 per kWh against 0.08 via
nina; sam is partly sold, so bob pays sam's ask 0.10; welfare 0.40.  With bob's premium w for nina his surplus
via nina is 0.08 + w: w = 0.01 changes nothing (0.09 < 0.10); w = 0.03 moves his 4 kWh to nina (0.11 > 0.10),
who is partly sold, so he pays her ask 0.12 (below his limit 0.20 + 0.03); welfare 0.44.  With amy too and no
premia, sam's 6 kWh go first and nina sells the last 2 kWh, so every kWh costs nina's ask 0.12 (welfare 0.76,
the split over the buyers is degenerate); with bob's premium 0.03 bob buys 4 kWh from nina at 0.12 and amy 4 kWh
from sam at 0.10: the pair prices differ by seller (welfare 0.40 + 0.44 = 0.84).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pydantic import ValidationError

from federates.common.config import MarketConfig, PreferenceConfig, Scenario, VppConfig
from federates.common.errors import ConfigError, SettlementError
from federates.prosumer.devices import TariffConfig, TouPeriod
from federates.vpp.p2p_market import Order, Submission, Trade, clear, verify_clearing, welfare_ratio
from federates.vpp.platform import CommunityVpp
from federates.vpp.preferences import pair_premia, preference_holders, trade_premia

FLOOR, CAP = 0.05, 0.30
BOUNDS = {"price_floor_per_kwh": FLOOR, "price_cap_per_kwh": CAP}
BILATERAL = ("bilateral", "bilateral_admm")

BOB = Order("bob:buy", "bob", "buy", 4.0, 0.20)
AMY = Order("amy:buy", "amy", "buy", 4.0, 0.20)
NINA = Order("nina:sell", "nina", "sell", 6.0, 0.12)
SAM = Order("sam:sell", "sam", "sell", 6.0, 0.10)


def deals(result) -> dict[tuple[str, str], tuple[float, float]]:
    """(buyer, seller) -> (kWh, price paid), rounded (ADMM to its tolerance)."""
    return {(t.buyer, t.seller): (round(t.energy_kwh, 3), round(t.price_per_kwh, 4)) for t in result.trades}


def sold_by(result) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in result.trades:
        out[t.seller] = round(out.get(t.seller, 0.0) + t.energy_kwh, 3)
    return out


# ---------------------------------------------------------------------------------------- the hand case


@pytest.mark.parametrize("mechanism", BILATERAL)
def test_without_preferences_bob_buys_from_the_cheaper_seller(mechanism):
    result = clear([BOB, NINA, SAM], mechanism, **BOUNDS)
    assert deals(result) == {("bob", "sam"): (4.0, 0.10)}
    assert result.diagnostics["welfare"] == pytest.approx(0.40, rel=1e-4)


@pytest.mark.parametrize("mechanism", BILATERAL)
def test_a_premium_for_the_neighbour_moves_bob_to_her(mechanism):
    result = clear([BOB, NINA, SAM], mechanism, premium_per_kwh={("bob", "nina"): 0.03}, **BOUNDS)
    assert deals(result) == {("bob", "nina"): (4.0, 0.12)}
    assert result.trades[0].premium_per_kwh == pytest.approx(0.03)
    assert result.diagnostics["welfare"] == pytest.approx((0.20 + 0.03 - 0.12) * 4.0, rel=1e-4)


@pytest.mark.parametrize("mechanism", BILATERAL)
def test_a_premium_below_the_price_difference_changes_nothing(mechanism):
    result = clear([BOB, NINA, SAM], mechanism, premium_per_kwh={("bob", "nina"): 0.01}, **BOUNDS)
    assert deals(result) == {("bob", "sam"): (4.0, 0.10)}


@pytest.mark.parametrize("mechanism", BILATERAL)
def test_with_two_buyers_the_premium_decides_who_trades_with_whom_and_pair_prices_differ(mechanism):
    book = [BOB, AMY, NINA, SAM]
    plain = clear(book, mechanism, **BOUNDS)
    assert sold_by(plain) == {"sam": 6.0, "nina": 2.0}
    assert {round(t.price_per_kwh, 4) for t in plain.trades} == {0.12}
    assert plain.diagnostics["welfare"] == pytest.approx(0.76, rel=1e-4)
    preferred = clear(book, mechanism, premium_per_kwh={("bob", "nina"): 0.03}, **BOUNDS)
    assert deals(preferred) == {("bob", "nina"): (4.0, 0.12), ("amy", "sam"): (4.0, 0.10)}
    assert preferred.diagnostics["welfare"] == pytest.approx(0.84, rel=1e-4)


def test_lp_prices_come_from_the_duals_plus_the_premium():
    # the LP's buyer dual for bob is his price of undifferentiated energy, pi_bob = pi_nina - w = 0.09: he
    # pays pi_bob + w = 0.12 on the preferred pair, which must not be read as 0.09 (the seller's limit 0.12)
    result = clear([BOB, NINA, SAM], "bilateral", premium_per_kwh={("bob", "nina"): 0.03}, **BOUNDS)
    assert result.diagnostics["prices_clipped"] == 0.0
    assert result.trades[0].seller_price_per_kwh == pytest.approx(0.12)


def test_empty_or_missing_premia_leave_the_market_exactly_as_before():
    book = [BOB, AMY, NINA, SAM]
    for mechanism in BILATERAL:
        base = clear(book, mechanism, trade_cost_per_kwh={("amy", "nina"): 0.01}, **BOUNDS)
        same = clear(book, mechanism, trade_cost_per_kwh={("amy", "nina"): 0.01}, premium_per_kwh={}, **BOUNDS)
        assert same.trades == base.trades
        assert all(t.premium_per_kwh == 0.0 for t in base.trades)


def test_other_mechanisms_ignore_premia():
    book = [BOB, NINA, SAM]
    assert (clear(book, "auction", premium_per_kwh={("bob", "nina"): 0.03}, **BOUNDS).trades
            == clear(book, "auction", **BOUNDS).trades)


def test_a_premium_lets_a_bid_below_the_ask_trade_and_is_then_the_buyers_limit():
    # bob bids 0.11 < nina's ask 0.12; his premium 0.02 for her makes 0.13 >= 0.12: he pays her ask
    bob = dataclasses.replace(BOB, limit_price_per_kwh=0.11)
    for mechanism in BILATERAL:
        assert clear([bob, NINA], mechanism, **BOUNDS).trades == []
        result = clear([bob, NINA], mechanism, premium_per_kwh={("bob", "nina"): 0.02}, **BOUNDS)
        assert deals(result) == {("bob", "nina"): (4.0, 0.12)}


def test_premia_combine_with_network_charges():
    # charge 0.01 on bob-nina: surplus via nina 0.20 + 0.03 - 0.12 - 0.01 = 0.10 ties sam's 0.10, so a premium
    # of 0.035 is needed; bob pays nina's ask + the charge 0.13, nina receives 0.12
    costs = {("bob", "nina"): 0.01}
    for mechanism in BILATERAL:
        result = clear([BOB, NINA, SAM], mechanism, trade_cost_per_kwh=costs,
                       premium_per_kwh={("bob", "nina"): 0.035}, **BOUNDS)
        assert deals(result) == {("bob", "nina"): (4.0, 0.13)}
        assert result.trades[0].seller_price_per_kwh == pytest.approx(0.12, abs=1e-4)


# ------------------------------------------------------------------------------------ ADMM against the LP


def random_book(seed: int, n: int = 8) -> tuple[list[Order], dict[tuple[str, str], float]]:
    """``n`` buyers and ``n`` sellers with limits in the band and premia on a third of the pairs (seeded)."""
    rng = np.random.default_rng(seed)
    orders = [Order(f"b{i}", f"B{i}", "buy", float(rng.uniform(1, 5)), float(rng.uniform(0.12, 0.30)))
              for i in range(n)]
    orders += [Order(f"s{i}", f"S{i}", "sell", float(rng.uniform(1, 5)), float(rng.uniform(0.05, 0.20)))
               for i in range(n)]
    premia = {(f"B{i}", f"S{j}"): float(rng.uniform(0.0, 0.05)) for i in range(n) for j in range(n)
              if rng.random() < 1 / 3}
    return orders, premia


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_admm_reaches_the_lp_with_premia(seed):
    orders, premia = random_book(seed)
    lp = clear(orders, "bilateral", premium_per_kwh=premia, **BOUNDS)
    admm = clear(orders, "bilateral_admm", premium_per_kwh=premia, **BOUNDS)
    assert admm.diagnostics["converged"] == 1.0
    assert admm.diagnostics["welfare"] == pytest.approx(lp.diagnostics["welfare"], rel=5e-4)
    assert welfare_ratio(admm, orders, premium_per_kwh=premia, **BOUNDS) == pytest.approx(1.0, abs=5e-4)
    # the premia matter on these books: without them the LP's welfare (counted with premia) is lower
    plain = clear(orders, "bilateral", **BOUNDS)
    repriced = sum((premia.get((t.buyer, t.seller), 0.0)) * t.energy_kwh for t in plain.trades)
    assert plain.diagnostics["welfare"] + repriced < lp.diagnostics["welfare"] - 1e-3


# ------------------------------------------------------------------------------------ checks and validation


def test_verify_clearing_allows_the_premium_and_nothing_more():
    book = [BOB, NINA]
    premia = {("bob", "nina"): 0.03}
    good = clear(book, "bilateral", premium_per_kwh=premia, **BOUNDS)
    dear = dataclasses.replace(good, trades=[dataclasses.replace(good.trades[0], price_per_kwh=0.23)])
    verify_clearing(dear, book, premium_per_kwh=premia, **BOUNDS)  # 0.20 + 0.03: at the pair's limit
    too_dear = dataclasses.replace(good, trades=[dataclasses.replace(good.trades[0], price_per_kwh=0.235)])
    with pytest.raises(SettlementError, match=r"buyer pays above its limit 0.2 \+ premium 0.03"):
        verify_clearing(too_dear, book, premium_per_kwh=premia, **BOUNDS)
    with pytest.raises(SettlementError, match="premium differs from the buyer's stated premium 0.0"):
        verify_clearing(dear, book, **BOUNDS)  # the trade claims a premium nobody stated


def test_verify_clearing_flags_a_premium_that_does_not_lift_the_bid_to_the_ask():
    bob = dataclasses.replace(BOB, limit_price_per_kwh=0.10)
    bad = Trade("bob", "nina", 1.0, 0.12, 0.0, "bob:buy", "nina:sell", premium_per_kwh=0.01)
    result = dataclasses.replace(clear([bob, NINA], "bilateral", **BOUNDS), trades=[bad],
                                 matched_kwh={"bob:buy": 1.0, "nina:sell": 1.0})
    with pytest.raises(SettlementError, match=r"bid 0.1 \+ premium 0.01 is below ask 0.12"):
        verify_clearing(result, [bob, NINA], premium_per_kwh={("bob", "nina"): 0.01}, **BOUNDS)


def test_premia_outside_the_band_are_refused():
    with pytest.raises(ConfigError, match=r"premium -0.01 per kWh for pair \('bob', 'nina'\)"):
        clear([BOB, NINA], "bilateral", premium_per_kwh={("bob", "nina"): -0.01}, **BOUNDS)
    with pytest.raises(ConfigError, match=r"in \[0, cap - floor\] = \[0, 0.25\]"):
        clear([BOB, NINA], "bilateral_admm", premium_per_kwh={("bob", "nina"): 0.26}, **BOUNDS)


# ---------------------------------------------------------------------- stating preferences in a scenario

NAMES = ["f_p000", "f_p001", "f_p002", "f_p003"]
HAS_PV = {"f_p000": True, "f_p001": False, "f_p002": True, "f_p003": False}
DISTANCE = {"f_p000": 0.010, "f_p001": 0.012, "f_p002": 0.030, "f_p003": 0.031}


def test_holders_are_a_seeded_share_independent_of_the_order_of_names():
    holders = preference_holders(NAMES, 0.5, seed=7, feeder="f")
    assert len(holders) == 2 and set(holders) <= set(NAMES)
    assert preference_holders(NAMES[::-1], 0.5, seed=7, feeder="f") == holders
    assert preference_holders(NAMES, 0.0, seed=7, feeder="f") == []
    assert preference_holders(NAMES, 1.0, seed=7, feeder="f") == NAMES


def test_class_and_named_premia_by_hand():
    prefs = PreferenceConfig(share=1.0, pv_premium_per_kwh=0.02, near_premium_per_kwh=0.01, near_distance_pu=0.002,
                             named={"f_p001": {"f_p003": 0.04}})
    premia = trade_premia(prefs, NAMES, has_pv=HAS_PV, distance=DISTANCE, seed=0, feeder="f")
    assert premia == {
        "f_p000": {"f_p001": 0.01, "f_p002": 0.02},                    # p001 near, p002 PV
        "f_p001": {"f_p000": 0.03, "f_p002": 0.02, "f_p003": 0.04},    # p000 PV + near, p003 named
        "f_p002": {"f_p000": 0.02, "f_p003": 0.01},
        "f_p003": {"f_p000": 0.02, "f_p002": 0.03},
    }
    # the platform passes the premia among this slot's buyers and sellers only
    assert pair_premia(premia, {"f_p001"}, {"f_p000", "f_p003"}) == {("f_p001", "f_p000"): 0.03,
                                                                      ("f_p001", "f_p003"): 0.04}


def test_no_stated_preference_gives_no_premia():
    assert trade_premia(PreferenceConfig(), NAMES, has_pv=HAS_PV, distance=DISTANCE, seed=0, feeder="f") == {}
    assert trade_premia(PreferenceConfig(share=1.0), NAMES, has_pv=HAS_PV, distance=DISTANCE, seed=0,
                        feeder="f") == {}


def test_named_prosumers_must_exist_on_the_feeder():
    prefs = PreferenceConfig(named={"f_p001": {"f_p009": 0.01}, "f_p042": {"f_p000": 0.01}})
    with pytest.raises(ConfigError) as err:
        trade_premia(prefs, NAMES, has_pv=HAS_PV, distance=DISTANCE, seed=0, feeder="f")
    assert len(err.value.problems) == 2
    assert "'f_p009' is not a prosumer of this feeder" in str(err.value)


def scenario(mechanism: str, preferences: dict) -> Scenario:
    return Scenario.model_validate({"market": {"mechanism": mechanism}, "feeders": [
        {"name": "f", "master": "x.dss", "prosumers": {"preferences": preferences}}]})


def test_scenario_refuses_premia_without_a_bilateral_market_or_beyond_the_band():
    assert scenario("bilateral_admm", {"share": 0.5, "pv_premium_per_kwh": 0.02}).feeders[0].prosumers.preferences
    with pytest.raises(ValidationError, match="only the bilateral market honours"):
        scenario("auction", {"share": 0.5, "pv_premium_per_kwh": 0.02})
    scenario("auction", {"share": 0.5})  # no premium stated: any mechanism
    # default tariff: lowest retail 0.12 - buy-back 0.04 = 0.08
    with pytest.raises(ValidationError, match="add up to 0.09 per kWh"):
        scenario("bilateral", {"pv_premium_per_kwh": 0.03, "near_premium_per_kwh": 0.01,
                               "named": {"a": {"b": 0.05}}})
    with pytest.raises(ValidationError, match="must be >= 0 and name a seller other than the buyer"):
        PreferenceConfig(named={"a": {"a": 0.01}})


def test_the_platform_clears_with_its_members_premia():
    tariff = TariffConfig(retail_tou=[TouPeriod(start_h=0, price_per_kwh=CAP)], buyback_price_per_kwh=FLOOR)
    members = {"bob": "pf", "nina": "pf", "sam": "pf"}
    subs = [Submission(o, sender="pf", submitted_s=0.0) for o in (BOB, NINA, SAM)]
    for mechanism in BILATERAL:
        def vpp(premia, mechanism=mechanism):
            return CommunityVpp(name="vpp_f", members=members, market=MarketConfig(mechanism=mechanism),
                                config=VppConfig(), tariff=tariff, penalty_multiplier=1.0, trade_premium=premia)
        plain = vpp({}).clear_layer1(subs, gate_s=10.0, hour=12.0)
        assert deals(plain.result) == {("bob", "sam"): (4.0, 0.10)}
        preferred = vpp({"bob": {"nina": 0.03}, "amy": {"sam": 0.05}}).clear_layer1(subs, gate_s=10.0, hour=12.0)
        assert deals(preferred.result) == {("bob", "nina"): (4.0, 0.12)}
        assert preferred.net_kwh == pytest.approx({"bob": 4.0, "nina": -4.0})


def test_welfare_ratio_counts_premia_on_trades_of_a_mechanism_that_ignored_them():
    # the auction pairs bob with sam (the cheaper ask): it misses bob's premium for nina, 0.44 - 0.40
    premia = {("bob", "nina"): 0.03}
    auction = clear([BOB, NINA, SAM], "auction", premium_per_kwh=premia, **BOUNDS)
    assert welfare_ratio(auction, [BOB, NINA, SAM], premium_per_kwh=premia, **BOUNDS) == pytest.approx(0.40 / 0.44)
    # with only nina selling, the auction's trade is the preferred one and worth the premium: as good as the LP
    alone = clear([BOB, NINA], "auction", premium_per_kwh=premia, **BOUNDS)
    assert welfare_ratio(alone, [BOB, NINA], premium_per_kwh=premia, **BOUNDS) == pytest.approx(1.0)
