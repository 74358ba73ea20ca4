import pytest

from federates.vpp.delivery import layer3_needs
from federates.vpp.p2p_market import Order
from federates.vpp_market.clearing import clear_layer3


def _book():
    return {"up": [Order("a:up:buy", "vpp_a", "buy", 2.0, 0.50), Order("b:up:sell", "vpp_b", "sell", 3.0, 0.10)],
            "down": [Order("c:down:buy", "vpp_c", "buy", 1.0, 0.40), Order("a:down:sell", "vpp_a", "sell", 1.0, 0.2)]}


def test_financial_trades_pay_wheeling_and_credit_the_buyer():
    r = clear_layer3(_book(), mechanism="auction", physical="financial", tie_capacity_kw=1e9,
                     wheeling_charge_per_kwh=0.02, period_s=300, price_floor_per_kwh=0.0, price_cap_per_kwh=10.0)
    up = [t for d, t in r.trades if d == "up"]
    assert sum(t.energy_kwh for t in up) == pytest.approx(2.0)
    for _, t in r.trades:
        assert t.fee_per_kwh == pytest.approx(0.02)
    # up: buyer credited +E, seller -E; down: buyer -E, seller +E; credits sum to zero
    assert r.credit_kwh["vpp_a"] == pytest.approx(2.0 + 1.0)
    assert r.credit_kwh["vpp_b"] == pytest.approx(-2.0)
    assert r.credit_kwh["vpp_c"] == pytest.approx(-1.0)
    assert sum(r.credit_kwh.values()) == pytest.approx(0.0)
    # k-double auction: the partly filled ask (0.10) bounds the price interval from above and below,
    # so the uniform price is 0.10; the buyer pays it plus the 0.02 wheeling charge
    assert up[0].price_per_kwh == pytest.approx(0.12)


def test_tie_capacity_limits_each_direction():
    r = clear_layer3(_book(), mechanism="auction", physical="tie", tie_capacity_kw=12.0,
                     wheeling_charge_per_kwh=0.02, period_s=300, price_floor_per_kwh=0.0, price_cap_per_kwh=10.0)
    up = sum(t.energy_kwh for d, t in r.trades if d == "up")
    assert up == pytest.approx(1.0)  # 12 kW over 5 minutes
    assert all(t.fee_per_kwh == 0.0 for _, t in r.trades)


def test_bilateral_option_reuses_layer1_code():
    r = clear_layer3(_book(), mechanism="bilateral", physical="financial", tie_capacity_kw=1e9,
                     wheeling_charge_per_kwh=0.0, period_s=300, price_floor_per_kwh=0.0, price_cap_per_kwh=10.0)
    assert sum(t.energy_kwh for d, t in r.trades if d == "up") == pytest.approx(2.0)
    for _, t in r.trades:
        assert 0.10 <= t.price_per_kwh <= 0.50


def test_matched_energy_per_order_adds_up_to_the_trades():
    r = clear_layer3(_book(), mechanism="auction", physical="tie", tie_capacity_kw=12.0,
                     wheeling_charge_per_kwh=0.0, period_s=300, price_floor_per_kwh=0.0, price_cap_per_kwh=10.0)
    traded = sum(t.energy_kwh for _, t in r.trades)
    assert sum(r.matched_kwh.values()) == pytest.approx(2 * traded)
    assert r.matched_kwh["a:up:buy"] == pytest.approx(1.0) and r.matched_kwh["b:up:sell"] == pytest.approx(1.0)


@pytest.mark.parametrize(("direction", "required_kw", "drift_kw"), [("up", 60.0, -5.0), ("down", -60.0, 5.0)])
def test_a_shortfall_in_either_direction_is_bought_at_no_more_than_the_penalty(direction, required_kw, drift_kw):
    # members can give 30 kW up and 40 kW down; the drift works against the request by 5 kW. Up: asked 30 kW,
    # expected 25 kW, short 35 kW. Down: asked -40 kW, expected -35 kW, short 25 kW. Either way the shortfall
    # is worth at most the penalty, so the buy limit is the penalty (0.5 per kWh)
    needs = layer3_needs(required_kw, 30.0, 40.0, drift_kw, period_s=300, penalty_price_per_kwh=0.5,
                         spare_price_per_kwh=0.05)
    buy = [n for n in needs if n.side == "buy"]
    assert [(n.direction, n.limit_price_per_kwh) for n in buy] == [(direction, 0.5)]
    assert buy[0].energy_kwh == pytest.approx((35.0 if direction == "up" else 25.0) * 300 / 3600)
    # cleared against spare capability: an ask above the penalty (but inside the Layer III band) is not
    # taken; one below it is, at a price no higher than the penalty
    order = Order(f"a:{direction}:buy", "vpp_a", "buy", buy[0].energy_kwh, buy[0].limit_price_per_kwh)
    for ask, traded in ((0.6, False), (0.4, True)):
        book = {direction: [order, Order(f"b:{direction}:sell", "vpp_b", "sell", 5.0, ask)]}
        r = clear_layer3(book, mechanism="auction", physical="financial", tie_capacity_kw=1e9,
                         wheeling_charge_per_kwh=0.0, period_s=300, price_floor_per_kwh=0.0, price_cap_per_kwh=10.0)
        assert bool(r.trades) is traded
        assert all(t.price_per_kwh <= 0.5 for _, t in r.trades)
