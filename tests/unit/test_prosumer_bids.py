"""bids_from (a whole fleet's bids from arrays) gives, bit for bit, what bid_from gives one prosumer at a time."""

from __future__ import annotations

from dataclasses import astuple

import numpy as np
import pytest

from federates.prosumer.bidding import bid_from, bids_from


def _bits(bid) -> list:
    fields = [*astuple(bid)[:-1], *bid.planned_p_kw]
    return [(type(v), np.float64(v).tobytes() if isinstance(v, float) else v) for v in fields]  # plain floats


@pytest.mark.parametrize("p2p_enabled", [True, False])
@pytest.mark.parametrize("vpp_enabled", [True, False])
def test_bids_from_arrays_are_bid_from_each_prosumer(p2p_enabled, vpp_enabled):
    rng = np.random.default_rng(6)
    n = 40
    imp, exp = rng.uniform(0.0, 3.0, n), rng.uniform(0.0, 3.0, n)
    imp[:6] = [0.0, -0.0, 1e-6, 2e-6, 3e-6, 5.0]  # zeros and buys around the 1e-6 kWh threshold (x 0.5 h)
    exp[6:12] = [0.0, -0.0, 1e-6, 2e-6, 3e-6, 5.0]
    up, down = rng.normal(0.0, 1.0, n), rng.normal(0.0, 1.0, n)  # negative reserves are offered as 0
    up[12], down[13] = -0.0, -0.0
    value, p2p_buy = rng.uniform(0.05, 0.3, n), rng.normal(0.0, 1.0, n)
    fallback = rng.random(n) < 0.3
    names = [f"p{i}" for i in range(n)]
    got = bids_from(names, 7, imp, exp, up, down, value, fallback, slot_h=0.5, p2p_buy_kw=p2p_buy,
                    p2p_enabled=p2p_enabled, vpp_enabled=vpp_enabled)
    want = [bid_from(names[i], 7, imp[i], exp[i], up[i], down[i], float(value[i]), fallback=bool(fallback[i]),
                     slot_h=0.5, p2p_buy_kw=float(p2p_buy[i]), p2p_enabled=p2p_enabled, vpp_enabled=vpp_enabled)
            for i in range(n)]
    assert [_bits(b) for b in got] == [_bits(b) for b in want]
    if p2p_enabled:
        assert any(b.buy_kwh for b in got) and any(b.sell_kwh for b in got)
    if vpp_enabled:
        assert any(b.flex_up_kw for b in got) and any(b.flex_down_kw for b in got)
