"""Layer III in financial mode: the wheeling charge comes out of the buyer's limit, so a trade happens only
when the buyer's limit covers the seller's ask plus the charge, and the buyer never pays above its limit."""

from __future__ import annotations

import pytest

from federates.vpp.p2p_market import Order
from federates.vpp_market.clearing import clear_layer3


def _clear(buy_limit: float, sell_limit: float, wheeling: float):
    books = {"up": [Order("a:buy", "vpp_a", "buy", 1.0, buy_limit), Order("b:sell", "vpp_b", "sell", 1.0,
                                                                            sell_limit)]}
    return clear_layer3(books, mechanism="auction", physical="financial", tie_capacity_kw=0.0,
                        wheeling_charge_per_kwh=wheeling, period_s=300, price_floor_per_kwh=0.0,
                        price_cap_per_kwh=10.0)


def test_no_trade_when_the_wheeling_charge_eats_the_surplus():
    # bid 0.30 vs ask 0.25 would trade without a charge; with 0.10 per kWh the buyer's net limit is 0.20
    assert _clear(0.30, 0.25, 0.0).trades
    assert _clear(0.30, 0.25, 0.10).trades == []


def test_buyer_pays_price_plus_wheeling_within_its_limit():
    result = _clear(0.50, 0.20, 0.10)
    (direction, t), = result.trades
    assert direction == "up" and t.energy_kwh == pytest.approx(1.0)
    assert t.fee_per_kwh == pytest.approx(0.10)
    assert 0.20 + 0.10 - 1e-12 <= t.price_per_kwh <= 0.50 + 1e-12  # seller gets >= its ask, buyer <= its limit
    assert result.credit_kwh == pytest.approx({"vpp_a": 1.0, "vpp_b": -1.0})
