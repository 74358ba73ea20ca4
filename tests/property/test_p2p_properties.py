"""Invariants of every P2P clearing mechanism on generated order books (hypothesis, derandomised).

The invariants are recomputed here from the trades, independently of ``verify_clearing``.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federates.vpp.p2p_market import MECHANISMS, SIDES, ClearingResult, Order, clear, sdr_prices

FLOOR, CAP = 0.04, 0.31
BOUNDS = {"price_floor_per_kwh": FLOOR, "price_cap_per_kwh": CAP}
TOL_PRICE, TOL_KWH = 1e-9, 1e-7
FAST = settings(max_examples=40, derandomize=True, deadline=None)

prices = st.integers(40, 310).map(lambda mills: mills / 1000)        # [FLOOR, CAP] on a 0.001 grid
energies = st.integers(1, 400).map(lambda q: q / 40)                 # 0.025 .. 10 kWh
premiums = st.integers(-270, 100).map(lambda mills: mills / 1000)     # >= FLOOR - CAP


@st.composite
def books(draw, *, unique_participants: bool = False, max_orders: int = 12) -> list[Order]:
    orders = []
    for i in range(draw(st.integers(0, max_orders))):
        who = f"p{i}" if unique_participants else f"p{draw(st.integers(0, 4))}"
        orders.append(Order(f"o{i}", who, draw(st.sampled_from(SIDES)), draw(energies), draw(prices),
                            draw(st.integers(0, 3))))
    return orders


@st.composite
def books_with_costs(draw) -> tuple[list[Order], dict[tuple[str, str], float]]:
    orders = draw(books())
    people = sorted({o.participant for o in orders})
    pairs = [(b, s) for b in people for s in people if b != s]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    return orders, {pair: draw(premiums) for pair in chosen}


def check_invariants(result: ClearingResult, orders: list[Order]) -> None:
    by_id = {o.order_id: o for o in orders}
    matched: dict[str, float] = defaultdict(float)
    cash: dict[str, float] = defaultdict(float)
    for t in result.trades:
        bid, ask = by_id[t.buy_order_id], by_id[t.sell_order_id]
        received = t.price_per_kwh - t.fee_per_kwh
        assert (bid.side, ask.side) == ("buy", "sell")
        assert (t.buyer, t.seller) == (bid.participant, ask.participant)
        assert t.energy_kwh > 0
        assert bid.limit_price_per_kwh >= ask.limit_price_per_kwh           # no trade where bid < ask
        assert t.price_per_kwh <= bid.limit_price_per_kwh + TOL_PRICE        # buyer within its limit
        assert received >= ask.limit_price_per_kwh - TOL_PRICE               # seller within its limit
        assert FLOOR - TOL_PRICE <= t.price_per_kwh <= CAP + TOL_PRICE
        assert FLOOR - TOL_PRICE <= received <= CAP + TOL_PRICE
        matched[bid.order_id] += t.energy_kwh
        matched[ask.order_id] += t.energy_kwh
        cash[t.buyer] -= t.price_per_kwh * t.energy_kwh
        cash[t.seller] += received * t.energy_kwh
        cash["network operator"] += t.fee_per_kwh * t.energy_kwh
    assert abs(sum(cash.values())) <= 1e-9                                    # payments balance
    assert set(result.matched_kwh) == set(by_id)
    for oid, order in by_id.items():
        assert result.matched_kwh[oid] == pytest.approx(matched[oid], abs=TOL_KWH)
        assert result.matched_kwh[oid] <= order.energy_kwh + TOL_KWH
    bought = sum(matched[o.order_id] for o in orders if o.side == "buy")
    sold = sum(matched[o.order_id] for o in orders if o.side == "sell")
    assert bought == pytest.approx(sold, abs=TOL_KWH)


@pytest.mark.parametrize("mechanism", MECHANISMS)
@FAST
@given(case=books_with_costs())
def test_every_mechanism_keeps_the_market_invariants(mechanism, case):
    orders, costs = case
    result = clear(orders, mechanism, trade_cost_per_kwh=costs, **BOUNDS)
    check_invariants(result, orders)
    if result.clearing_price_per_kwh is not None:                             # uniform-price mechanisms
        assert all(t.price_per_kwh == result.clearing_price_per_kwh for t in result.trades)
    if not {o.side for o in orders} >= set(SIDES):
        assert result.trades == []                                            # one-sided book


@FAST
@given(orders=books())
def test_auction_price_clears_the_market(orders):
    """Every order left with energy would not trade at the price: bids at or below it, asks at or above."""
    result = clear(orders, "auction", k=0.3, **BOUNDS)
    price = result.clearing_price_per_kwh
    if price is None:
        return
    for o in orders:
        if result.matched_kwh[o.order_id] < o.energy_kwh - TOL_KWH:
            if o.side == "buy":
                assert o.limit_price_per_kwh <= price + TOL_PRICE
            else:
                assert o.limit_price_per_kwh >= price - TOL_PRICE


@FAST
@given(orders=books(unique_participants=True))
def test_auction_is_as_efficient_as_the_welfare_lp(orders):
    """With no trade costs the divisible double auction reaches the maximum welfare (the LP optimum)."""
    auction = clear(orders, "auction", **BOUNDS).diagnostics["welfare"]
    lp = clear(orders, "bilateral", **BOUNDS).diagnostics["welfare"]
    assert auction == pytest.approx(lp, rel=1e-9, abs=1e-9)


@FAST
@given(orders=books())
def test_pay_as_bid_leaves_an_uncrossed_book(orders):
    result = clear(orders, "pay_as_bid", seed=11, **BOUNDS)
    open_orders = [o for o in orders if result.matched_kwh[o.order_id] < o.energy_kwh - TOL_KWH]
    best_bid = max((o.limit_price_per_kwh for o in open_orders if o.side == "buy"), default=-1.0)
    best_ask = min((o.limit_price_per_kwh for o in open_orders if o.side == "sell"), default=9.0)
    assert best_bid < best_ask
    assert result.trades == clear(orders, "pay_as_bid", seed=11, **BOUNDS).trades  # seeded: reproducible


@FAST
@given(data=st.data(), orders=books(), seed=st.integers(0, 1000))
def test_pay_as_bid_does_not_depend_on_the_order_of_the_book(data, orders, seed):
    """Priority is arrival, then a seeded draw per order id: any permutation of the book trades the same."""
    shuffled = data.draw(st.permutations(orders))
    assert clear(shuffled, "pay_as_bid", seed=seed, **BOUNDS).trades == clear(orders, "pay_as_bid", seed=seed,
                                                                              **BOUNDS).trades


@FAST
@given(orders=books())
def test_sdr_price_follows_the_ratio_of_the_participants(orders):
    result = clear(orders, "sdr", **BOUNDS)
    if not result.trades:
        return
    taking_part = [o for o in orders if result.matched_kwh[o.order_id] > 0]
    supply = sum(o.energy_kwh for o in taking_part if o.side == "sell")
    demand = sum(o.energy_kwh for o in taking_part if o.side == "buy")
    assert result.clearing_price_per_kwh == pytest.approx(sdr_prices(supply / demand, FLOOR, CAP)[0])
    rationed, share = ("buy", supply / demand) if supply < demand else ("sell", demand / supply)
    for o in taking_part:  # pro rata on the rationed side, the other side fully served
        expected = o.energy_kwh * share if o.side == rationed else o.energy_kwh
        assert result.matched_kwh[o.order_id] == pytest.approx(expected)


@FAST
@given(case=books_with_costs())
def test_admm_reaches_the_centralised_welfare(case):
    orders, costs = case
    lp = clear(orders, "bilateral", trade_cost_per_kwh=costs, **BOUNDS)
    admm = clear(orders, "bilateral_admm", trade_cost_per_kwh=costs, **BOUNDS)
    assert admm.diagnostics["welfare"] == pytest.approx(lp.diagnostics["welfare"], rel=5e-3, abs=1e-9)
    assert admm.diagnostics["welfare"] <= lp.diagnostics["welfare"] + 1e-9  # feasible, so never above
