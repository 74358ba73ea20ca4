"""Hand-sized books with hand-computed answers for the P2P gate and the five clearing mechanisms."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from federates.common.errors import ConfigError, SettlementError
from federates.vpp.admm import buyer_update, project_capped_simplex_rows, seller_update
from federates.vpp.p2p_market import (
    MECHANISMS,
    ClearingResult,
    Order,
    Submission,
    Trade,
    arrival_sequence,
    clear,
    kda_price,
    screen_orders,
    sdr_prices,
    verify_clearing,
    welfare_ratio,
)

FLOOR, CAP = 0.05, 0.30
BOUNDS = {"price_floor_per_kwh": FLOOR, "price_cap_per_kwh": CAP}


def buy(oid, who, e, p, arrival=0):
    return Order(oid, who, "buy", e, p, arrival)


def sell(oid, who, e, p, arrival=0):
    return Order(oid, who, "sell", e, p, arrival)


def deals(result: ClearingResult) -> list[tuple[str, str, float, float, float]]:
    """(buy order, sell order, kWh, price, fee) rounded, in trade order."""
    return [(t.buy_order_id, t.sell_order_id, round(t.energy_kwh, 6), round(t.price_per_kwh, 6),
             round(t.fee_per_kwh, 6)) for t in result.trades]


# ----------------------------------------------------------------------------------------------- gate


def sub(order, sender="vpp1", at_s=100.0):
    return Submission(order=order, sender=sender, submitted_s=at_s)


HOSTS = {"p1": "vpp1", "p2": "vpp1", "p3": "vpp2"}


def screen(subs):
    return screen_orders(subs, gate_s=1800.0, hosts=HOSTS, **BOUNDS)


def test_gate_accepts_valid_orders_in_submission_time_order():
    later, earlier = buy("a", "p1", 2.0, 0.2, arrival=0), sell("b", "p2", 1.0, 0.1, arrival=7)
    accepted, rejected = screen([sub(later, at_s=50.0), sub(earlier, at_s=10.0)])
    # arrival is restamped with the rank of the submission time, whatever the sender wrote
    assert accepted == [dataclasses.replace(earlier, arrival=0), dataclasses.replace(later, arrival=1)]
    assert rejected == []


def test_gate_rejects_late_with_the_times_in_the_reason():
    order = buy("a", "p1", 2.0, 0.2)
    accepted, rejected = screen([sub(order, at_s=1805.0)])
    assert accepted == []
    assert rejected[0].reason == "late: submitted at 1805 s after gate 1800 s"
    assert screen([sub(order, at_s=1800.0)])[0] == [order]  # exactly at the gate is on time


@pytest.mark.parametrize(("participant", "sender", "fragment"), [
    ("p3", "vpp1", "hosted by 'vpp2', not by sender 'vpp1'"),
    ("p9", "vpp1", "'p9' is not hosted by any federate"),
])
def test_gate_rejects_identity_failures(participant, sender, fragment):
    accepted, rejected = screen([sub(buy("a", participant, 2.0, 0.2), sender=sender)])
    assert accepted == []
    assert rejected[0].reason.startswith("identity: ")
    assert fragment in rejected[0].reason


@pytest.mark.parametrize(("order", "prefix"), [
    (buy("a", "p1", 0.0, 0.2), "energy: "),
    (buy("a", "p1", -1.0, 0.2), "energy: "),
    (buy("a", "p1", float("nan"), 0.2), "energy: "),
    (buy("a", "p1", 1.0, 0.31), "price: "),
    (sell("a", "p1", 1.0, 0.04), "price: "),
    (Order("a", "p1", "hold", 1.0, 0.2), "side: "),
])
def test_gate_rejects_bad_energy_price_and_side(order, prefix):
    accepted, rejected = screen([sub(order)])
    assert accepted == []
    assert rejected[0].reason.startswith(prefix)


def test_gate_keeps_first_valid_of_duplicates():
    too_dear = buy("a", "p1", 1.0, 0.99)            # invalid: does not block the next one
    first_valid = buy("a", "p1", 1.0, 0.25)
    same_id = sell("a", "p2", 1.0, 0.10)            # order_id 'a' already accepted
    second_buy = buy("c", "p1", 3.0, 0.20)          # p1 already has a buy order
    p1_sell = sell("d", "p1", 1.0, 0.10)            # other side of p1 is fine
    accepted, rejected = screen([sub(too_dear, at_s=1), sub(first_valid, at_s=2), sub(same_id, at_s=3),
                                 sub(second_buy, at_s=4), sub(p1_sell, at_s=5)])
    assert accepted == [dataclasses.replace(first_valid, arrival=1), dataclasses.replace(p1_sell, arrival=4)]
    reasons = [r.reason for r in rejected]
    assert reasons[0].startswith("price: ")
    assert reasons[1].startswith("duplicate order_id 'a'")
    assert reasons[2] == "duplicate: participant 'p1' already has buy order 'a' at this gate"


# ---------------------------------------------------------------------------------------- validation


def test_clear_reports_every_problem_at_once():
    bad = [buy("a", "p1", 1.0, 0.5), buy("a", "p2", -1.0, 0.2)]
    with pytest.raises(ConfigError) as err:
        clear(bad, "auction", k=1.5, **BOUNDS)
    assert len(err.value.problems) == 4  # price, duplicate id, energy, k
    with pytest.raises(ConfigError, match="unknown"):
        clear([], "vickrey", **BOUNDS)


def test_sdr_needs_a_positive_floor_and_costs_must_stay_within_the_band():
    with pytest.raises(ConfigError, match="positive price floor"):
        clear([], "sdr", price_floor_per_kwh=0.0, price_cap_per_kwh=0.3)
    with pytest.raises(ConfigError, match="floor - cap"):
        clear([], "bilateral", trade_cost_per_kwh={("a", "b"): -0.3}, **BOUNDS)


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("book", [[], [buy("b", "p1", 3.0, 0.3)], [sell("s", "p2", 3.0, 0.05)],
                                  [buy("b", "p1", 3.0, 0.10), sell("s", "p2", 3.0, 0.20)]])
def test_empty_one_sided_and_uncrossed_books_trade_nothing(mechanism, book):
    result = clear(book, mechanism, **BOUNDS)
    assert result.trades == []
    assert result.clearing_price_per_kwh is None
    assert result.matched_kwh == {o.order_id: 0.0 for o in book}
    assert result.diagnostics["welfare"] == 0.0


# ------------------------------------------------------------------------------------------- auction


CROSSING_BOOK = [buy("b1", "B1", 10.0, 0.30), buy("b2", "B2", 5.0, 0.22),
                 sell("s1", "S1", 10.0, 0.10), sell("s2", "S2", 10.0, 0.25)]


@pytest.mark.parametrize(("k", "price"), [(0.5, 0.235), (1.0, 0.25), (0.0, 0.22)])
def test_auction_volume_and_k_price_by_hand(k, price):
    # b1 takes all of s1 (10 kWh); then b2 (0.22) < s2 (0.25) stops. Clearing interval:
    # b = min(last bid 0.30, next ask 0.25) = 0.25, a = max(last ask 0.10, next bid 0.22) = 0.22.
    result = clear(CROSSING_BOOK, "auction", k=k, **BOUNDS)
    assert result.clearing_price_per_kwh == pytest.approx(price)
    assert deals(result) == [("b1", "s1", 10.0, round(price, 6), 0.0)]
    assert result.matched_kwh == {"b1": 10.0, "b2": 0.0, "s1": 10.0, "s2": 0.0}
    assert result.diagnostics["welfare"] == pytest.approx((0.30 - 0.10) * 10.0)


def test_auction_partial_fill_prices_at_the_marginal_ask():
    book = [buy("b1", "B1", 6.0, 0.30), buy("b2", "B2", 4.0, 0.20),
            sell("s1", "S1", 5.0, 0.10), sell("s2", "S2", 8.0, 0.18)]
    # demand 10 kWh all >= 0.18; s2 keeps 3 kWh at 0.18, so the only clearing price is 0.18.
    result = clear(book, "auction", k=0.5, **BOUNDS)
    assert result.clearing_price_per_kwh == pytest.approx(0.18)
    assert deals(result) == [("b1", "s1", 5.0, 0.18, 0.0), ("b1", "s2", 1.0, 0.18, 0.0),
                             ("b2", "s2", 4.0, 0.18, 0.0)]
    assert result.matched_kwh["s2"] == pytest.approx(5.0)


def test_kda_price_midpoint_of_a_single_crossing():
    assert kda_price(0.30, 0.10, None, None, 0.5) == pytest.approx(0.20)
    assert kda_price(0.30, 0.10, 0.22, 0.25, 0.5) == pytest.approx(0.235)


# ---------------------------------------------------------------------------------------- pay as bid


def test_pay_as_bid_matches_at_the_resting_price_in_arrival_order():
    book = [sell("s1", "S1", 5.0, 0.10, arrival=0), sell("s2", "S2", 5.0, 0.15, arrival=1),
            buy("b1", "B1", 7.0, 0.20, arrival=2), buy("b2", "B2", 5.0, 0.12, arrival=3),
            sell("s3", "S3", 4.0, 0.11, arrival=4)]
    result = clear(book, "pay_as_bid", **BOUNDS)
    # b1 lifts s1 (cheapest first) then 2 kWh of s2 at their asks; b2 (0.12) cannot reach s2 (0.15) and
    # rests; s3 (0.11) hits the resting b2 and gets b2's price.
    assert deals(result) == [("b1", "s1", 5.0, 0.10, 0.0), ("b1", "s2", 2.0, 0.15, 0.0),
                             ("b2", "s3", 4.0, 0.12, 0.0)]
    assert result.clearing_price_per_kwh is None
    assert result.matched_kwh == {"s1": 5.0, "s2": 2.0, "b1": 7.0, "b2": 4.0, "s3": 4.0}


def test_pay_as_bid_time_priority_among_equal_resting_prices():
    book = [sell("late", "S2", 5.0, 0.10, arrival=1), sell("early", "S1", 5.0, 0.10, arrival=0),
            buy("b", "B", 5.0, 0.20, arrival=2)]
    assert deals(clear(book, "pay_as_bid", **BOUNDS)) == [("b", "early", 5.0, 0.10, 0.0)]


def test_pay_as_bid_ties_in_arrival_are_a_seeded_shuffle():
    buyers = [buy(f"b{i}", f"B{i}", 1.0, 0.2, arrival=1) for i in range(6)]
    book = [sell("s", "S", 3.0, 0.1, arrival=0), *buyers]
    sequences = [[o.order_id for o in arrival_sequence(book, seed)] for seed in range(5)]
    assert all(seq[0] == "s" for seq in sequences)            # arrival 0 still comes first
    assert len({tuple(seq) for seq in sequences}) > 1          # the seed changes the order of the ties
    assert arrival_sequence(book, 3) == arrival_sequence(book, 3)
    # the resting 3 kWh go to the first three buyers of the seeded sequence
    first_three = set(sequences[3][1:4])
    filled = {k for k, v in clear(book, "pay_as_bid", seed=3, **BOUNDS).matched_kwh.items() if v > 0}
    assert filled == first_three | {"s"}


PAB_BOOK = [sell("s1", "S1", 3.0, 0.10), sell("s2", "S2", 2.0, 0.12), sell("s3", "S3", 4.0, 0.20),
            buy("b1", "B1", 2.5, 0.25), buy("b2", "B2", 3.0, 0.15), buy("b3", "B3", 1.5, 0.11),
            buy("b4", "B4", 2.0, 0.22)]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_pay_as_bid_gives_the_same_trades_whatever_the_order_of_the_book(seed):
    # all orders arrive together (arrival 0): the seeded tie-break decides, not their place in the list
    permutations = [PAB_BOOK, PAB_BOOK[::-1], [PAB_BOOK[n] for n in np.random.default_rng(3).permutation(7)]]
    outcomes = [deals(clear(book, "pay_as_bid", seed=seed, **BOUNDS)) for book in permutations]
    assert outcomes[0] and outcomes[1] == outcomes[0] and outcomes[2] == outcomes[0]


def test_pay_as_bid_priority_is_the_submission_time_not_the_reading_order():
    # the VPP federate numbers orders in the order it reads its prosumer federates; the gate replaces that
    # with the rank of the submission time, so reading the federates the other way round changes nothing
    hosts = {f"P{n}": f"fed{n}" for n in range(4)}
    orders = [sell("s_late", "P0", 2.0, 0.10), sell("s_early", "P1", 2.0, 0.10), buy("b1", "P2", 2.0, 0.20),
              buy("b2", "P3", 1.0, 0.20)]
    times = {"s_late": 20.0, "s_early": 10.0, "b1": 20.0, "b2": 30.0}

    def read_in(sequence):
        subs = [sub(dataclasses.replace(o, arrival=n), sender=hosts[o.participant], at_s=times[o.order_id])
                for n, o in enumerate(sequence)]
        accepted, _ = screen_orders(subs, gate_s=1800.0, hosts=hosts, **BOUNDS)
        return deals(clear(accepted, "pay_as_bid", seed=5, **BOUNDS))

    forward, backward = read_in(orders), read_in(orders[::-1])
    assert forward == backward
    # s_early (10 s) comes first; b1 and s_late (20 s) in the seeded order: either way b1 takes s_early, the
    # earlier of the two equal asks, and b2 (30 s) gets s_late
    assert sorted(forward) == [("b1", "s_early", 2.0, 0.10, 0.0), ("b2", "s_late", 1.0, 0.10, 0.0)]


def test_pay_as_bid_welfare_against_the_lp_by_hand():
    # s1 rests; the low bid b_low arrives next and takes all of it at 0.10; b_high comes too late.
    # welfare (0.12 - 0.10) * 5 = 0.10 against the LP's (0.28 - 0.10) * 5 = 0.90: a ratio of 1/9
    book = [sell("s1", "S1", 5.0, 0.10, arrival=0), buy("b_low", "BL", 5.0, 0.12, arrival=1),
            buy("b_high", "BH", 5.0, 0.28, arrival=2)]
    result = clear(book, "pay_as_bid", **BOUNDS)
    assert deals(result) == [("b_low", "s1", 5.0, 0.10, 0.0)]
    assert welfare_ratio(result, book, **BOUNDS) == pytest.approx(1 / 9)
    assert welfare_ratio(clear(book, "auction", **BOUNDS), book, **BOUNDS) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------- bilateral


FEE_BOOK = [buy("b1", "B1", 10.0, 0.30), buy("b2", "B2", 10.0, 0.25), sell("s1", "S1", 15.0, 0.10)]
FEE_COSTS = {("B1", "S1"): 0.02}


@pytest.mark.parametrize("mechanism", ["bilateral", "bilateral_admm"])
def test_bilateral_prices_from_duals_with_a_pair_fee(mechanism):
    # surplus B1: 0.30-0.10-0.02 = 0.18 > B2: 0.15, so B1 is served fully and B2 gets the last 5 kWh.
    # B2 is partly served, so its price is its value 0.25; S1 receives 0.25; B1 pays 0.25 + fee 0.02.
    result = clear(FEE_BOOK, mechanism, trade_cost_per_kwh=FEE_COSTS, **BOUNDS)
    assert result.diagnostics["welfare"] == pytest.approx(0.18 * 10 + 0.15 * 5, rel=5e-3)
    by_pair = {(t.buy_order_id, t.sell_order_id): t for t in result.trades}
    assert by_pair["b1", "s1"].energy_kwh == pytest.approx(10.0, abs=0.05)
    assert by_pair["b2", "s1"].energy_kwh == pytest.approx(5.0, abs=0.05)
    if mechanism == "bilateral":
        assert deals(result) == [("b1", "s1", 10.0, 0.27, 0.02), ("b2", "s1", 5.0, 0.25, 0.0)]
        assert by_pair["b1", "s1"].seller_price_per_kwh == pytest.approx(0.25)


def test_bilateral_seller_price_when_supply_is_long():
    book = [buy("b1", "B1", 10.0, 0.30), sell("s1", "S1", 4.0, 0.10), sell("s2", "S2", 12.0, 0.12)]
    # surplus via S2 0.18 beats S1 0.15 (fee 0.05); S2 is partly sold, so it sets the price 0.12.
    result = clear(book, "bilateral", trade_cost_per_kwh={("B1", "S1"): 0.05}, **BOUNDS)
    assert deals(result) == [("b1", "s2", 10.0, 0.12, 0.0)]
    assert result.diagnostics["welfare"] == pytest.approx(1.8)


def test_bilateral_keeps_several_orders_of_one_participant_apart():
    book = [buy("b1a", "B1", 5.0, 0.30), buy("b1b", "B1", 5.0, 0.15), sell("s1", "S1", 6.0, 0.10)]
    result = clear(book, "bilateral", **BOUNDS)
    # b1b is partly served (1 kWh) so the price is its value 0.15, for both of B1's orders.
    assert deals(result) == [("b1a", "s1", 5.0, 0.15, 0.0), ("b1b", "s1", 1.0, 0.15, 0.0)]


def test_bilateral_negative_fee_keeps_both_prices_in_the_band():
    # a preference (fee -0.02) makes v = c = cap tradeable; the only price with the seller's receipt
    # <= cap is 0.28 paid, 0.30 received, the operator paying the 0.02 difference.
    book = [buy("b", "B", 5.0, CAP), sell("s", "S", 5.0, CAP)]
    result = clear(book, "bilateral", trade_cost_per_kwh={("B", "S"): -0.02}, **BOUNDS)
    assert deals(result) == [("b", "s", 5.0, 0.28, -0.02)]
    assert result.trades[0].seller_price_per_kwh == pytest.approx(CAP)


def test_bilateral_never_trades_bid_below_ask_or_with_itself():
    book = [buy("b", "B", 5.0, 0.20), sell("s", "S", 5.0, 0.21), buy("pb", "P", 5.0, 0.30),
            sell("ps", "P", 5.0, 0.10)]
    costs = {("B", "S"): -0.05}
    for mechanism in ("bilateral", "bilateral_admm"):
        result = clear(book, mechanism, trade_cost_per_kwh=costs, **BOUNDS)
        assert {(t.buyer, t.seller) for t in result.trades} == {("B", "P"), ("P", "S")}


def test_admm_reports_iterations_and_small_residuals():
    result = clear(FEE_BOOK, "bilateral_admm", trade_cost_per_kwh=FEE_COSTS, admm_tol=1e-6, admm_rel_tol=0.0,
                   **BOUNDS)
    d = result.diagnostics
    assert d["converged"] == 1.0
    assert 1 <= d["iterations"] < 20000
    assert d["primal_residual"] <= 1e-6 * np.sqrt(2) and d["dual_residual"] <= 1e-6 * np.sqrt(2)


def test_admm_stopped_early_still_returns_a_consistent_market(caplog):
    result = clear(FEE_BOOK, "bilateral_admm", trade_cost_per_kwh=FEE_COSTS, admm_max_iter=3, **BOUNDS)
    assert result.diagnostics["converged"] == 0.0
    assert "stopped after 3 iterations" in caplog.text
    verify_clearing(result, FEE_BOOK, **BOUNDS)


def test_capped_simplex_projection_by_hand():
    a = np.array([[0.5, 0.5, 2.0], [0.6, 0.6, -1.0], [0.2, -1.0, 0.1]])
    got = project_capped_simplex_rows(a, np.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(got, [[0.0, 0.0, 1.0], [0.5, 0.5, 0.0], [0.2, 0.0, 0.1]])


def test_admm_local_updates_read_only_their_own_agent():
    rng = np.random.default_rng(7)
    shape = (4, 3)
    value, cost = rng.uniform(0, 1, 4), rng.uniform(0, 1, 3)
    e_buy, e_sell = rng.uniform(0.2, 1, 4), rng.uniform(0.2, 1, 3)
    pair_cost, z, x, u = (rng.uniform(-0.1, 0.1, shape) for _ in range(4))
    mask = np.ones(shape, dtype=bool)
    rows = buyer_update(value, pair_cost, mask, e_buy, z, u, 0.7)
    cols = seller_update(cost, mask, e_sell, x, u, 0.7)
    for b in range(4):  # buyer b alone, with only its own data and messages
        alone = buyer_update(value[b:b + 1], pair_cost[b:b + 1], mask[b:b + 1], e_buy[b:b + 1], z[b:b + 1],
                             u[b:b + 1], 0.7)
        np.testing.assert_allclose(alone[0], rows[b])
    for s in range(3):
        alone = seller_update(cost[s:s + 1], mask[:, s:s + 1], e_sell[s:s + 1], x[:, s:s + 1], u[:, s:s + 1],
                              0.7)
        np.testing.assert_allclose(alone[:, 0], cols[:, s])


# ----------------------------------------------------------------------------------------------- sdr


def test_sdr_price_formula_endpoints_and_midpoint():
    assert sdr_prices(0.0, 0.05, 0.25) == pytest.approx((0.25, 0.25))
    assert sdr_prices(1.0, 0.05, 0.25) == pytest.approx((0.05, 0.05))
    assert sdr_prices(2.0, 0.05, 0.25) == pytest.approx((0.05, 0.05))
    # SDR 0.5: sell = 0.05*0.25 / (0.20*0.5 + 0.05) = 1/12; buy = sell*0.5 + 0.25*0.5
    assert sdr_prices(0.5, 0.05, 0.25) == pytest.approx((1 / 12, 1 / 24 + 0.125))


SDR_BOUNDS = {"price_floor_per_kwh": 0.05, "price_cap_per_kwh": 0.25}


def test_sdr_short_supply_rations_buyers_pro_rata():
    book = [buy("b1", "B1", 6.0, 0.25, 0), buy("b2", "B2", 2.0, 0.25, 1),
            sell("s1", "S1", 3.0, 0.05, 2), sell("s2", "S2", 1.0, 0.05, 3)]
    result = clear(book, "sdr", **SDR_BOUNDS)
    assert result.clearing_price_per_kwh == pytest.approx(1 / 12)
    assert result.diagnostics["sdr"] == pytest.approx(0.5)
    assert result.diagnostics["buy_price_per_kwh"] == pytest.approx(1 / 24 + 0.125)
    twelfth = round(1 / 12, 6)
    assert deals(result) == [("b1", "s1", 3.0, twelfth, 0.0), ("b2", "s2", 1.0, twelfth, 0.0)]


def test_sdr_long_supply_sells_pro_rata_at_the_floor():
    book = [buy("b1", "B1", 4.0, 0.25), sell("s1", "S1", 6.0, 0.05, 1), sell("s2", "S2", 2.0, 0.05, 2)]
    result = clear(book, "sdr", **SDR_BOUNDS)
    assert result.clearing_price_per_kwh == pytest.approx(0.05)
    assert result.matched_kwh == pytest.approx({"b1": 4.0, "s1": 3.0, "s2": 1.0})


def test_sdr_excludes_participants_whose_limits_the_price_violates():
    book = [buy("b1", "B1", 6.0, 0.25, 0), buy("b2", "B2", 2.0, 0.25, 1), buy("b3", "B3", 2.0, 0.06, 2),
            sell("s1", "S1", 3.0, 0.05, 3), sell("s2", "S2", 1.0, 0.05, 4), sell("s3", "S3", 1.0, 0.20, 5)]
    # with everyone SDR = 5/10 -> sell price 0.0714 violates s3 (0.20) most; then SDR = 0.4 -> 0.0962
    # violates b3 (0.06); then SDR = 0.5 -> 1/12, which b1, b2, s1 and s2 all accept.
    result = clear(book, "sdr", **SDR_BOUNDS)
    assert result.clearing_price_per_kwh == pytest.approx(1 / 12)
    assert result.diagnostics["excluded_orders"] == 2.0
    assert result.matched_kwh == pytest.approx({"b1": 3.0, "b2": 1.0, "b3": 0.0, "s1": 3.0, "s2": 1.0,
                                                "s3": 0.0})


def test_sdr_trades_nothing_on_a_priced_book_where_the_auction_trades_everything():
    # limits inside the band, as the HEMS sets them. SDR 5/5 = 1 -> price = floor 0.05, s2 (0.12) is violated
    # most and leaves; SDR 3/5 -> 0.015 / 0.2 = 0.075 < s1's 0.08, s1 leaves too: no seller, no trade.
    # The auction pairs b1-s1 (3 kWh) and b2-s2 (2 kWh) at (0.20 + 0.12) / 2 = 0.16, welfare
    # 3 * 0.17 + 2 * 0.08 = 0.67, the LP optimum.
    book = [buy("b1", "B1", 3.0, 0.25), buy("b2", "B2", 2.0, 0.20), sell("s1", "S1", 3.0, 0.08),
            sell("s2", "S2", 2.0, 0.12)]
    sdr = clear(book, "sdr", **BOUNDS)
    assert sdr.trades == []
    assert sdr.diagnostics["excluded_orders"] == 2.0
    auction = clear(book, "auction", **BOUNDS)
    assert auction.clearing_price_per_kwh == pytest.approx(0.16)
    assert auction.diagnostics["volume_kwh"] == pytest.approx(5.0)
    assert auction.diagnostics["welfare"] == pytest.approx(0.67)
    assert welfare_ratio(auction, book, **BOUNDS) == pytest.approx(1.0)
    assert welfare_ratio(sdr, book, **BOUNDS) == 0.0


# -------------------------------------------------------------------------------------- consistency


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_every_mechanism_balances_energy_and_money_on_a_crossing_book(mechanism):
    result = clear(CROSSING_BOOK + [sell("s3", "S3", 4.0, 0.05)], mechanism, **BOUNDS)
    bought = sum(v for k, v in result.matched_kwh.items() if k.startswith("b"))
    sold = sum(v for k, v in result.matched_kwh.items() if k.startswith("s"))
    paid = sum(t.price_per_kwh * t.energy_kwh for t in result.trades)
    received = sum(t.seller_price_per_kwh * t.energy_kwh for t in result.trades)
    fees = sum(t.fee_per_kwh * t.energy_kwh for t in result.trades)
    assert result.trades
    assert bought == pytest.approx(sold)
    assert paid == pytest.approx(received + fees)


def test_verify_clearing_catches_a_buyer_paying_above_its_limit_and_unbalanced_energy():
    good = clear(CROSSING_BOOK, "auction", **BOUNDS)
    verify_clearing(good, CROSSING_BOOK, **BOUNDS)
    dear = dataclasses.replace(good.trades[0], price_per_kwh=0.31)
    with pytest.raises(SettlementError, match="buyer pays above its limit"):
        verify_clearing(dataclasses.replace(good, trades=[dear]), CROSSING_BOOK, **BOUNDS)
    short = dict(good.matched_kwh, s1=9.0)
    with pytest.raises(SettlementError, match="order 's1'"):
        verify_clearing(dataclasses.replace(good, matched_kwh=short), CROSSING_BOOK, **BOUNDS)
    with pytest.raises(SettlementError, match="bid 0.22 is below ask 0.25"):
        verify_clearing(dataclasses.replace(good, trades=[Trade("B2", "S2", 1.0, 0.22, 0.0, "b2", "s2")],
                                            matched_kwh=dict(good.matched_kwh, b1=0, s1=0, b2=1, s2=1)),
                        CROSSING_BOOK, **BOUNDS)


def test_verify_clearing_checks_each_side_against_its_own_limit_not_the_band():
    # b2's limit 0.22 is below the cap 0.30 and s2's limit 0.25 above the floor 0.05: a price between the
    # limit and the band's edge is inside the band but must still be flagged
    good = clear(CROSSING_BOOK, "auction", **BOUNDS)
    b2_s1 = Trade("B2", "S1", 1.0, 0.26, 0.0, "b2", "s1")       # 0.22 < 0.26 < 0.30
    matched = dict(good.matched_kwh, b1=0.0, s1=1.0, b2=1.0, s2=0.0)
    with pytest.raises(SettlementError, match="buyer pays above its limit 0.22"):
        verify_clearing(dataclasses.replace(good, trades=[b2_s1], matched_kwh=matched), CROSSING_BOOK, **BOUNDS)
    b1_s2 = Trade("B1", "S2", 1.0, 0.20, 0.0, "b1", "s2")       # 0.05 < 0.20 < 0.25
    matched = dict(good.matched_kwh, b1=1.0, s1=0.0, b2=0.0, s2=1.0)
    with pytest.raises(SettlementError, match="seller receives 0.2 below its limit 0.25"):
        verify_clearing(dataclasses.replace(good, trades=[b1_s2], matched_kwh=matched), CROSSING_BOOK, **BOUNDS)
