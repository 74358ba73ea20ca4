"""ISO ancillary market: price files (real SPP data) and the co-optimised clearing on hand-sized stacks."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from federates.common.errors import ConfigError
from federates.iso.ancillary_market import (
    SPP_PRICE_RANGE_PER_MW_H,
    SupplyOffer,
    clear_ancillary,
    synthetic_supply_stack,
)
from federates.iso.prices import load_price_csv, load_requirement_csv, price_at

SPP_CSV_NAME = "spp_ancillary_prices_2022-02-02_03.csv"  # in the shared reference data (tests/conftest.py)
HEADER = "interval_ending,reg_up,reg_down,spin,supp"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text(text)
    return path


# --- price files -------------------------------------------------------------------------------------

def test_real_spp_file_loads_with_hour_ending_semantics(shared_data):
    df = load_price_csv(shared_data / SPP_CSV_NAME)
    assert list(df.columns) == ["reg_up", "reg_down", "spin", "supp"]
    assert len(df) == 48 and df.attrs["interval_s"] == 3600.0
    assert df.loc["2022-02-02 08:00", "reg_up"] == pytest.approx(27.6522)
    # hour ending 01:00 covers [00:00, 01:00); 01:00 itself already belongs to hour ending 02:00
    assert price_at(df, datetime(2022, 2, 2, 0, 0))["reg_down"] == pytest.approx(10.2687)
    assert price_at(df, datetime(2022, 2, 2, 0, 59))["reg_down"] == pytest.approx(10.2687)
    assert price_at(df, datetime(2022, 2, 2, 1, 0))["reg_down"] == pytest.approx(10.4197)
    assert price_at(df, datetime(2022, 2, 3, 23, 59))["spin"] == pytest.approx(3.0001)
    with pytest.raises(ConfigError, match="outside"):
        price_at(df, datetime(2022, 2, 4, 0, 0))


def test_repeated_header_block_is_skipped(tmp_path):
    text = (f"# day 1\n{HEADER}\n2022-02-02 01:00,8,10,0,0\n2022-02-02 02:00,9,11,1,0\n"
            f"# day 2\n{HEADER.replace(',', ', ')}\n2022-02-02 03:00,7,12,2,0\n")
    df = load_price_csv(_write(tmp_path, text))
    assert df["reg_up"].tolist() == [8.0, 9.0, 7.0]


@pytest.mark.parametrize("body, needle", [
    ("2022-02-02 01:00,8,10,0,0\n2022-02-02 02:00,9,abc,1,0\n", "line 3: column 'reg_down'"),
    ("2022-02-02 01:00,8,10,0,0\n2022-02-02 02:00,9,1,0\n", "line 3: 4 fields"),
    ("2022-02-02 02:00,8,10,0,0\n2022-02-02 01:00,9,1,1,0\n", "line 3: time"),
    ("2022-02-02 01:00,8,10,0,0\nyesterday,9,1,1,0\n", "line 3: 'yesterday' is not a time"),
    ("2022-02-02 01:00,8,10,0,0\n", "at least two rows"),
    ("2022-02-02 01:00,8,10,0,0\n2022-02-02 02:00,9,1,1,0\n2022-02-02 04:00,9,1,1,0\n", "evenly spaced"),
])
def test_bad_price_file_names_file_line_and_fix(tmp_path, body, needle):
    path = _write(tmp_path, f"{HEADER}\n{body}")
    with pytest.raises(ConfigError, match=needle) as info:
        load_price_csv(path)
    assert str(path) in str(info.value)


def test_bad_header_reports_every_problem(tmp_path):
    path = _write(tmp_path, "time,reg_up,regdown\n2022-02-02 01:00,1,2\n")
    with pytest.raises(ConfigError) as info:
        load_price_csv(path)
    assert len(info.value.problems) == 3  # time column, missing reg_down/spin, unknown 'regdown'
    assert "'interval_ending'" in str(info.value) and "regdown" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_price_csv(tmp_path / "nope.csv")


def test_requirement_file_in_kw(tmp_path):
    path = _write(tmp_path, "interval_ending,reg_up_kw,reg_down_kw,spin_kw\n"
                            "2022-02-02 00:15,500,400,800\n2022-02-02 00:30,600,400,900\n")
    df = load_requirement_csv(path)
    assert df.attrs["interval_s"] == 900.0
    assert price_at(df, datetime(2022, 2, 2, 0, 20)) == {"reg_up": 600.0, "reg_down": 400.0, "spin": 900.0}


# --- clearing ----------------------------------------------------------------------------------------

def test_single_product_merit_order():
    offers = [SupplyOffer("a", 60, {"reg_up": 10}, {}), SupplyOffer("b", 80, {"reg_up": 15}, {}),
              SupplyOffer("c", 80, {"reg_up": 25}, {})]
    r = clear_ancillary(offers, {"reg_up": 100})
    assert r.awards_kw == {"a": {"reg_up": 60.0}, "b": {"reg_up": 40.0}, "c": {"reg_up": 0.0}}
    assert r.clearing_price_per_mw_h["reg_up"] == pytest.approx(15.0)
    assert r.shortfall_kw["reg_up"] == pytest.approx(0.0)
    assert r.cost == pytest.approx((60 * 10 + 40 * 15) / 1000)  # $/h


def test_co_optimisation_prices_include_opportunity_cost():
    # c is cheap for both up products but has 100 kW for both; d only spin at 8, e only reg_up at 20.
    # optimum: c gives 80 reg_up + 20 spin, d 30 spin. One more kW of reg_up moves 1 kW of c away from
    # spin: 5 - 1 + 8 = 12 $/MW-h; one more kW of spin comes from d: 8 $/MW-h.
    offers = [SupplyOffer("c", 100, {"reg_up": 5, "spin": 1}, {}), SupplyOffer("d", 100, {"spin": 8}, {}),
              SupplyOffer("e", 100, {"reg_up": 20}, {})]
    r = clear_ancillary(offers, {"reg_up": 80, "spin": 50})
    assert r.awards_kw["c"] == pytest.approx({"reg_up": 80.0, "spin": 20.0})
    assert r.awards_kw["d"]["spin"] == pytest.approx(30.0) and r.awards_kw["e"]["reg_up"] == pytest.approx(0)
    assert r.clearing_price_per_mw_h == pytest.approx({"reg_up": 12.0, "spin": 8.0})


def test_reg_down_has_its_own_capacity_and_max_kw_caps():
    # up products share 100 kW (spin capped at 30 kW); reg_down uses its own 100 kW
    offers = [SupplyOffer("u", 100, {"reg_up": 5, "reg_down": 3, "spin": 4}, {"spin": 30})]
    r = clear_ancillary(offers, {"reg_up": 60, "reg_down": 90, "spin": 40})
    assert r.awards_kw["u"] == pytest.approx({"reg_up": 60.0, "reg_down": 90.0, "spin": 30.0})
    assert r.shortfall_kw == pytest.approx({"reg_up": 0.0, "reg_down": 0.0, "spin": 10.0})
    assert r.clearing_price_per_mw_h == pytest.approx({"reg_up": 5.0, "reg_down": 3.0, "spin": 1000.0})


def test_shortfall_sets_scarcity_price():
    r = clear_ancillary([SupplyOffer("a", 50, {"reg_down": 4}, {})], {"reg_down": 80},
                        scarcity_price_per_mw_h=500.0)
    assert r.shortfall_kw["reg_down"] == pytest.approx(30.0)
    assert r.clearing_price_per_mw_h["reg_down"] == pytest.approx(500.0)
    assert r.cost == pytest.approx((50 * 4 + 30 * 500) / 1000)


def test_synthetic_stack_is_seeded_in_spp_range_and_clears_without_shortfall():
    req = {"reg_up": 5000.0, "reg_down": 4000.0, "spin": 8000.0}
    stack = synthetic_supply_stack(7, req)
    assert stack == synthetic_supply_stack(7, req) and stack != synthetic_supply_stack(8, req)
    for o in stack:
        for p, price in o.price_per_mw_h.items():
            lo, hi = SPP_PRICE_RANGE_PER_MW_H[p]
            assert lo <= price <= hi
    r = clear_ancillary(stack, req)
    by_name = {o.name: o for o in stack}
    for p, need in req.items():
        assert sum(a[p] for a in r.awards_kw.values()) == pytest.approx(need, rel=1e-6)
        assert r.shortfall_kw[p] == pytest.approx(0.0, abs=1e-6)
        assert r.clearing_price_per_mw_h[p] <= SPP_PRICE_RANGE_PER_MW_H[p][1] + 1e-6
    for name, a in r.awards_kw.items():
        assert a["reg_up"] + a["spin"] <= by_name[name].capacity_kw + 1e-6
        assert all(a[p] <= by_name[name].max_kw[p] + 1e-6 for p in a)
    # uniform pricing pays at least the as-offered cost
    assert sum(r.clearing_price_per_mw_h[p] * req[p] for p in req) / 1000 >= r.cost - 1e-9


def test_invalid_offers_are_all_reported():
    offers = [SupplyOffer("a", 50, {"reg_upp": 4}, {}), SupplyOffer("a", -1, {"spin": 4}, {})]
    with pytest.raises(ConfigError) as info:
        clear_ancillary(offers, {"spin": 10, "supp": 5})
    text = str(info.value)
    assert len(info.value.problems) == 4
    assert "'supp'" in text and "'reg_upp'" in text and "unique name" in text and "-1" in text
