from datetime import datetime

import pytest

from federates.common.config import IsoConfig
from federates.common.messages import AncillaryOffer
from federates.iso.operator import IsoOperator, attribute


def _offer(vpp, kw, price, baseline=5.0, slot=1):
    return AncillaryOffer(time_s=0, slot=slot, vpp=vpp, offered_kw=kw, offer_price_per_mw_h=price,
                          baseline_p_kw=baseline)


def test_cheap_vpp_offer_is_awarded_and_settled_against_its_baseline():
    # a multiplier other than both the config default (10) and settle_interval's default (2): the operator
    # must pass on the one it was configured with
    cfg = IsoConfig(requirement_kw={"reg_up": 300.0, "reg_down": 300.0, "spin": 300.0}, penalty_multiplier=7.0)
    iso = IsoOperator(cfg, ["vpp_a"], datetime(2024, 6, 21), 3600, seed=1)
    clearing = iso.clear(1, [_offer("vpp_a", {"reg_up": 100.0}, {"reg_up": 0.0})])
    assert clearing.awards["vpp_a"]["reg_up"] == pytest.approx(100.0)
    assert clearing.prices["reg_up"] > 0
    # an interval of slot 1 in which the regulation signal asks for up delivery
    interval = next(i for i in range(3, 6) if iso.signal(i)[0] > 0.1)
    asked = 100.0 * iso.signal(interval)[0]
    settlement, required, delivered = iso.settle(interval, "vpp_a", 5.0 + asked, credit_kwh=0.0)
    assert required["reg_up"] == pytest.approx(asked) and delivered["reg_up"] == pytest.approx(asked)
    assert settlement.total_penalty == pytest.approx(0.0)
    # delivering nothing while asked costs a penalty of shortfall x price x multiplier x 5 min
    s2, _, _ = iso.settle(interval, "vpp_a", 5.0, credit_kwh=0.0)
    assert s2.penalty["reg_up"] == pytest.approx(asked / 1000 * clearing.prices["reg_up"] * 7.0 / 12)
    assert s2.penalty["reg_up"] > 0 and s2.performance_score["reg_up"] == pytest.approx(0.0)


def test_layer3_credit_counts_as_delivery():
    iso = IsoOperator(IsoConfig(requirement_kw={"reg_up": 300.0}), ["vpp_a"], datetime(2024, 6, 21), 3600, seed=4)
    iso.clear(1, [_offer("vpp_a", {"reg_up": 100.0}, {"reg_up": 0.0}, baseline=0.0)])
    interval = next(i for i in range(3, 6) if iso.signal(i)[0] > 0.1)
    asked = 100.0 * iso.signal(interval)[0]
    s, _, delivered = iso.settle(interval, "vpp_a", 0.0, credit_kwh=asked / 12)
    assert delivered["reg_up"] == pytest.approx(asked) and s.total_penalty == pytest.approx(0.0)


def test_attribute_splits_up_delivery_by_what_was_asked():
    out = attribute(30.0, {"reg_up": 20.0, "spin": 40.0, "reg_down": 0.0})
    assert out == pytest.approx({"reg_up": 10.0, "spin": 20.0, "reg_down": 0.0})
    assert attribute(-12.0, {"reg_down": 15.0})["reg_down"] == pytest.approx(12.0)


def test_prices_from_a_real_iso_csv(shared_data):
    csv = shared_data / "spp_ancillary_prices_2022-02-02_03.csv"
    cfg = IsoConfig(prices="csv", price_csv=csv, requirement_kw={"reg_up": 300.0, "reg_down": 300.0, "spin": 300.0})
    iso = IsoOperator(cfg, ["vpp_a"], datetime(2022, 2, 2, 7, 0), 3600, seed=0)
    # slot 1 = 07:15-07:30 lies in hour ending 08:00: reg_up 27.6522 $/MW-h (SPP, 2022-02-02)
    clearing = iso.clear(1, [_offer("vpp_a", {"reg_up": 100.0, "spin": 50.0}, {"reg_up": 20.0, "spin": 30.0})])
    assert clearing.prices["reg_up"] == pytest.approx(27.6522)
    assert clearing.awards["vpp_a"] == {"reg_up": 100.0, "spin": 0.0}  # spin offered above its 21.1278 price


def test_regulation_signal_from_a_csv(tmp_path):
    csv = tmp_path / "reg.csv"
    rows = ["interval_ending,regulation"] + [f"2024-06-21 00:{5 * (k + 1):02d}:00,{(-1) ** k * 0.1 * k:.1f}"
                                              for k in range(11)] + ["2024-06-21 01:00:00,0.5"]
    csv.write_text("\n".join(rows) + "\n")
    iso = IsoOperator(IsoConfig(requirement_kw={"reg_up": 300.0}, regulation_csv=csv), ["vpp_a"],
                      datetime(2024, 6, 21), 3600, seed=0)
    assert [iso.signal(k)[0] for k in range(4)] == pytest.approx([0.0, -0.1, 0.2, -0.3])
    assert iso.signal(11)[0] == pytest.approx(0.5)
    csv.write_text("interval_ending,regulation\n2024-06-21 00:05:00,1.5\n2024-06-21 00:10:00,0.0\n")
    with pytest.raises(Exception, match=r"must lie in \[-1, 1\]"):
        IsoOperator(IsoConfig(requirement_kw={"reg_up": 300.0}, regulation_csv=csv), ["vpp_a"],
                    datetime(2024, 6, 21), 3600, seed=0)
