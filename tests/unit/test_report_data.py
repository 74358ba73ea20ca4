"""The data behind the report's figures (``runner.report_data``), on frames small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from runner import report_data as rd

LEDGER = ["time", "participant", "counterparty", "item", "energy_kwh", "amount"]


def ledger_of(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame([(0, *r[:3], 0.0, r[3]) for r in rows], columns=LEDGER)


def community() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two members of vpp_a. The VPP earns 10 $ of reg_up, pays a 2 $ penalty, sells 1 $ in Layer III and pays
    p1 1 $ of activation compensation: income 8 $; it keeps a 10 % fee (0.8 $) and shares 7.2 $ in the ratio
    2:1 (p1 4.8 $, p2 2.4 $). p1 then pays p2 0.5 $ of guarantee."""
    ledger = ledger_of([
        ("p1", "utility", "utility_import", -3.0), ("p1", "utility", "utility_export", 0.4),
        ("p2", "utility", "utility_export", 1.1),
        ("p1", "p2", "p2p_purchase", -0.9), ("p2", "p1", "p2p_sale", 0.9),
        ("p1", "network_operator", "network_fee", -0.1),
        ("vpp_a", "iso", "ancillary_reg_up", 10.0), ("vpp_a", "iso", "penalty", -2.0),
        ("vpp_a", "vpp_b", "l3_sale", 1.0), ("vpp_b", "vpp_a", "l3_purchase", -1.0),
        ("vpp_a", "p1", "activation_compensation", -1.0), ("p1", "vpp_a", "activation_compensation", 1.0),
        ("vpp_a", "platform_costs", "platform_fee", -0.8),
        ("vpp_a", "p1", "revenue_share", -4.8), ("p1", "vpp_a", "revenue_share", 4.8),
        ("vpp_a", "p2", "revenue_share", -2.4), ("p2", "vpp_a", "revenue_share", 2.4),
        ("p1", "vpp_a", "guarantee", -0.5), ("vpp_a", "p1", "guarantee", 0.5),
        ("p2", "vpp_a", "guarantee", 0.5), ("vpp_a", "p2", "guarantee", -0.5),
    ])
    paid = -ledger[ledger["participant"].isin(["p1", "p2"])].groupby("participant")["amount"].sum()
    per = pd.DataFrame({"prosumer": ["p1", "p2"], "feeder": ["a", "a"], "cash_cost": paid.to_numpy(),
                        "stored_energy_value": [-0.3, 0.2], "community_battery_stored_value": [0.05, 0.0]})
    per["total_cost"] = per["cash_cost"] - per["stored_energy_value"] - per["community_battery_stored_value"]
    return ledger, per


def test_revenue_share_is_split_into_what_the_vpp_earned():
    ledger, _ = community()
    split = rd.revenue_share_split(ledger)
    p1 = split.loc["p1"]  # weight 4.8 / 7.2 = 2/3 of the income 8 $ and of the fee 0.8 $
    assert p1["share_ancillary"] == pytest.approx(2 / 3 * 10.0)
    assert p1["share_penalty"] == pytest.approx(2 / 3 * -2.0)
    assert p1["share_l3"] == pytest.approx(2 / 3 * 1.0)
    assert p1["share_activation"] == pytest.approx(2 / 3 * -1.0)
    assert p1["share_fee"] == pytest.approx(2 / 3 * -0.8)
    assert split.sum(axis=1).to_dict() == pytest.approx({"p1": 4.8, "p2": 2.4})


def test_bill_items_sum_to_the_total_cost_and_keep_their_signs():
    ledger, per = community()
    bills = rd.bill_items(ledger, per)
    assert list(bills.columns) == [k for k, _, _ in rd.BILL_ITEMS]
    np.testing.assert_allclose(bills.sum(axis=1), per.set_index("prosumer")["total_cost"], atol=1e-12)
    p1 = bills.loc["p1"]
    assert (p1["utility_import"], p1["utility_export"]) == pytest.approx((3.0, -0.4)), "cost > 0, credit < 0"
    assert (p1["p2p_purchase"], p1["network_fee"], p1["activation_compensation"]) == pytest.approx((0.9, 0.1, -1.0))
    assert p1["share_ancillary"] == pytest.approx(-20 / 3) and p1["share_penalty"] == pytest.approx(4 / 3)
    assert p1["guarantee"] == pytest.approx(0.5) and bills.loc["p2", "guarantee"] == pytest.approx(-0.5)
    assert (p1["stored_energy"], p1["community_stored"]) == pytest.approx((0.3, -0.05))
    assert bills.loc["p2", "p2p_sale"] == pytest.approx(-0.9)
    assert (bills["other"] == 0).all()


def test_an_unknown_item_is_kept_as_other():
    ledger, per = community()
    ledger = pd.concat([ledger, ledger_of([("p2", "utility", "demand_charge", -0.7)])], ignore_index=True)
    per.loc[per["prosumer"] == "p2", "total_cost"] += 0.7
    bills = rd.bill_items(ledger, per)
    assert bills.loc["p2", "other"] == pytest.approx(0.7)
    np.testing.assert_allclose(bills.sum(axis=1), per.set_index("prosumer")["total_cost"], atol=1e-12)


def test_bill_selection_keeps_everyone_or_the_extremes():
    costs = pd.Series({f"p{i:03d}": float(i) for i in range(100)})
    names, what = rd.bill_selection(costs.iloc[:30], None, keep=40, each=5)
    assert names == sorted(costs.index[:30]) and what == "all 30 prosumers"
    reference = costs + pd.Series({n: (3.0 if n == "p050" else 1.0) for n in costs.index})  # p050 saved most
    reference["p007"] = costs["p007"] - 2.0  # p007 lost
    names, what = rd.bill_selection(costs, reference, keep=40, each=5)
    assert len(names) == 10 and names[0] == "p007" and names[-1] == "p050"
    assert "saved least" in what and "of 100" in what
    names, _ = rd.bill_selection(costs, None, keep=40, each=5)
    assert names == ["p000", "p001", "p002", "p003", "p004", "p095", "p096", "p097", "p098", "p099"]


def test_voltage_profile_band_moments_and_distance():
    rows = []
    for t, (a, b, c) in zip((0, 300, 600), ((1.00, 1.02, 0.99), (0.97, 0.99, 1.03), (0.98, 1.04, 1.00)), strict=True):
        rows += [(t, "f", "f_a", a), (t, "f", "f_b", b), (t, "g", "g_a", c)]
    voltages = pd.DataFrame(rows, columns=["time", "feeder", "prosumer", "v_pu"])
    placement = pd.DataFrame({"feeder": ["f", "f", "f", "g"], "load": ["la", "lb", "lx", "ga"],
                              "prosumer": ["f_a", "f_b", np.nan, "g_a"], "houses": [1, 1, 0, 1],
                              "bus": ["ba", "bb", "bx", "gb"], "distance_km": [0.1, 0.25, 0.3, 1.5],
                              "reason": ["", "", "too big", ""]})
    profile, moments = rd.voltage_profile(voltages, placement)
    f_a = profile.set_index("prosumer").loc["f_a"]
    assert (f_a["v_min_pu"], f_a["v_median_pu"], f_a["v_max_pu"]) == pytest.approx((0.97, 0.98, 1.00))
    assert f_a["distance_km"] == 0.1
    # feeder f: lowest 0.97 at 300 s (f_a), highest 1.04 at 600 s (f_b); what each prosumer saw then
    assert moments.loc["f"].to_dict() == pytest.approx({"t_low_s": 300, "v_low_pu": 0.97, "t_high_s": 600,
                                                       "v_high_pu": 1.04})
    f_b = profile.set_index("prosumer").loc["f_b"]
    assert (f_b["v_at_low_pu"], f_b["v_at_high_pu"], f_a["v_at_high_pu"]) == pytest.approx((0.99, 1.04, 0.98))
    assert moments.loc["g", "t_low_s"] == 0 and moments.loc["g", "t_high_s"] == 300
    assert profile.set_index("prosumer").loc["g_a", "distance_km"] == 1.5
    without = rd.voltage_profile(voltages, placement.drop(columns="distance_km").assign(distance_km=np.nan))[0]
    assert without["distance_km"].isna().all(), "a run that did not record the distance: unknown, not 0"


def ancillary() -> pd.DataFrame:
    """vpp_a reg_up: offered 20 kW and awarded 10 kW in slots 1 and 2 (15 min each); three 5-minute deliveries
    in slot 1 asked 5, 10 and 0 kW, got 5, 7 and 1 kW; the second is penalised 0.2 $. vpp_b spin: awarded 4 kW
    in slot 1, never deployed (asked 0, delivered 0)."""
    nan = np.nan
    rows = [
        (7, 1, "vpp_a", "reg_up", 20.0, 5.0, 10.0, 18.0, nan, nan, nan, 0.0),
        (907, 2, "vpp_a", "reg_up", 20.0, 5.0, 10.0, 18.0, nan, nan, nan, 0.0),
        (7, 1, "vpp_b", "spin", 4.0, 3.0, 4.0, 9.0, nan, nan, nan, 0.0),
        (900, 1, "vpp_a", "reg_up", 20.0, nan, 10.0, 18.0, 5.0, 5.0, 1.0, 0.0),
        (1200, 1, "vpp_a", "reg_up", 20.0, nan, 10.0, 18.0, 10.0, 7.0, 0.7, 0.2),
        (1500, 1, "vpp_a", "reg_up", 20.0, nan, 10.0, 18.0, 0.0, 1.0, 1.0, 0.0),
        (900, 1, "vpp_b", "spin", 4.0, nan, 4.0, 9.0, 0.0, 0.0, 1.0, 0.0),
    ]
    cols = ["time", "slot", "vpp", "product", "offered_kw", "offer_price", "awarded_kw", "clearing_price",
            "required_kw", "delivered_kw", "performance", "penalty"]
    return pd.DataFrame(rows, columns=cols).assign(penalty_without_l3=lambda df: df["penalty"])


def test_award_summary_adds_awards_requests_and_deliveries():
    s = rd.award_summary(ancillary())
    a = s.loc[("vpp_a", "reg_up")]
    assert (a["offered_kwh"], a["awarded_kwh"]) == pytest.approx((2 * 20 * 0.25, 2 * 10 * 0.25))
    assert (a["required_kwh"], a["delivered_kwh"]) == pytest.approx((15 / 12, 13 / 12))
    assert a["accuracy"] == pytest.approx(1 - (0 + 3 + 1) / 15)
    assert (a["penalty"], a["penalised_intervals"]) == pytest.approx((0.2, 1))
    b = s.loc[("vpp_b", "spin")]
    assert b["awarded_kwh"] == pytest.approx(1.0) and math.isnan(b["accuracy"]), "nothing asked: no score"


def test_award_series_per_vpp_and_summed():
    awards, deliveries = rd.award_series(ancillary())
    assert awards.loc[awards["vpp"] == "vpp_a", "start_s"].tolist() == [900, 1800], "an award is for its slot"
    assert deliveries.loc[deliveries["vpp"] == "vpp_a", "start_s"].tolist() == [900, 1200, 1500]
    both = ancillary()
    both.loc[both["vpp"] == "vpp_b", "product"] = "reg_up"
    awards, deliveries = rd.award_series(both, by_vpp=False)
    first = awards[awards["start_s"] == 900].iloc[0]
    assert (first["vpp"], first["offered_kw"], first["awarded_kw"]) == ("all VPPs", 24.0, 14.0)
    d900 = deliveries[deliveries["start_s"] == 900].iloc[0]
    assert (d900["required_kw"], d900["delivered_kw"], d900["awarded_kw"]) == (5.0, 5.0, 14.0)


def test_p2p_price_slots_are_energy_weighted():
    trades = pd.DataFrame({"time": [4, 4, 4, 1804], "slot": [1, 1, 1, 2], "layer": [1, 1, 3, 1],
                           "market": ["vpp_a", "vpp_a", "vpp_market_up", "vpp_a"], "buyer": ["x", "y", "v", "x"],
                           "seller": ["z", "z", "w", "y"], "energy_kwh": [1.0, 3.0, 5.0, 2.0],
                           "price_per_kwh": [0.10, 0.20, 0.5, 0.15]})
    slots = rd.p2p_price_slots(trades).set_index("slot")
    assert slots.loc[1, "mean_price_per_kwh"] == pytest.approx((0.1 * 1 + 0.2 * 3) / 4), "Layer III left out"
    assert (slots.loc[1, "min_price_per_kwh"], slots.loc[1, "max_price_per_kwh"], slots.loc[1, "trades"]) == \
        pytest.approx((0.10, 0.20, 2))
    assert slots.loc[1, "start_s"] == 1800 and slots.loc[2, "energy_kwh"] == 2.0
