import pytest

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
