import math
from datetime import datetime

import pandas as pd
import pytest

from federates.common.errors import SettlementError
from federates.prosumer.devices import TariffConfig, TouPeriod
from federates.vpp.aggregation import guarantee_transfers
from runner import ledger as led
from runner.storage import ETA_DEFAULT

ETA_CHARGE = ETA_DEFAULT[0]

TARIFF = TariffConfig(retail_tou=[TouPeriod(start_h=0, price_per_kwh=0.20)], buyback_price_per_kwh=0.05)
START = datetime(2024, 6, 21)


def _steps(rows):
    cols = ["time", "prosumer", "feeder", "grid_kw", "delta_p_kw", "reserve_up_kw", "reserve_down_kw"]
    return pd.DataFrame(rows, columns=cols)


def _trades(rows):
    return pd.DataFrame(rows, columns=["time", "slot", "layer", "market", "buyer", "seller", "energy_kwh",
                                       "price_per_kwh"])


def test_utility_bill_nets_p2p_positions_per_slot():
    # a exports 6 kW for 30 min (3 kWh) and sells 2 kWh to b; b imports 4 kW (2 kWh) and buys those 2 kWh
    steps = _steps([(t, "a", "f", 6.0, 0, 0, 0) for t in range(0, 1800, 300)]
                   + [(t, "b", "f", -4.0, 0, 0, 0) for t in range(0, 1800, 300)])
    trades = _trades([(0, 0, 1, "vpp_f", "b", "a", 2.0, 0.10)])
    bill = led.utility_entries(steps, trades, TARIFF, START).set_index("participant")
    assert bill.loc["a", "item"] == "utility_export" and bill.loc["a", "amount"] == pytest.approx(1.0 * 0.05)
    assert "b" not in bill.index  # its import was covered by its peer purchase exactly


def test_overselling_peer_buys_the_rest_at_retail():
    steps = _steps([(t, "a", "f", 1.2, 0, 0, 0) for t in range(0, 1800, 300)])  # 0.6 kWh exported
    trades = _trades([(0, 0, 1, "vpp_f", "b", "a", 1.0, 0.10)])  # but sold 1.0 kWh
    bill = led.utility_entries(steps, trades, TARIFF, START)
    assert bill["item"].tolist() == ["utility_import"] and bill["amount"].sum() == pytest.approx(-0.4 * 0.20)


def test_revenue_is_passed_on_completely_and_balances():
    steps = _steps([(0, "a", "f", 0, 6.0, 10.0, 0.0), (0, "b", "f", 0, 0.0, 30.0, 0.0)])
    recorded = pd.DataFrame([(0, "vpp_f", "iso", "ancillary_reg_up", 0.0, 2.0),
                             (0, "vpp_f", "iso", "penalty", 0.0, -0.2),
                             (0, "vpp_f", "a", "activation_compensation", 0.5, -0.075),
                             (0, "a", "vpp_f", "activation_compensation", 0.5, 0.075)],
                            columns=["time", "participant", "counterparty", "item", "energy_kwh", "amount"])
    rows = led.revenue_share_entries(recorded, steps, {"vpp_f": 0.1}, {"a": "vpp_f", "b": "vpp_f"})
    full = pd.concat([recorded, rows], ignore_index=True)
    left = 2.0 - 0.2 - 0.075
    shares = rows[(rows.item == "revenue_share") & rows.participant.isin(["a", "b"])].set_index("participant")
    assert shares.loc["a", "amount"] == pytest.approx(0.9 * left * 10 / 40)
    assert shares.loc["b", "amount"] == pytest.approx(0.9 * left * 30 / 40)
    assert rows[rows.item == "platform_fee"]["amount"].sum() == pytest.approx(-0.1 * left)
    assert led.money_residual(full) == pytest.approx(0.0, abs=1e-12)
    assert led.vpp_balance_residual(full, ["vpp_f"]) == pytest.approx(0.0, abs=1e-12)


def test_check_raises_on_imbalance():
    led.check({"money": 1e-9})
    with pytest.raises(Exception, match="does not balance"):
        led.check({"money": 0.01})


# ---- the VPP's guarantee: nobody pays more than under top-down --------------------------------------------------
def _guarantee_steps(rows):
    """rows: (prosumer, grid_kw, soc_kwh, topdown_grid_kw, topdown_soc_kwh), held for one 30-min slot."""
    cols = ["time", "prosumer", "feeder", "grid_kw", "soc_kwh", "topdown_grid_kw", "topdown_soc_kwh",
            "battery_kw", "delta_p_kw", "reserve_up_kw", "reserve_down_kw"]
    return pd.DataFrame([(t, p, "f", g, s, tg, ts, 0.0, 0.0, 0.0, 0.0) for p, g, s, tg, ts in rows
                         for t in range(0, 1800, 300)], columns=cols)


def _settle(steps):
    frames = {"ledger": pd.DataFrame(columns=led.COLUMNS), "prosumer_steps": steps, "trades": _trades([])}
    return led.build_ledger(frames, TARIFF, START, {"vpp_f": 0.0}, {"a": "vpp_f", "b": "vpp_f"})


def _cost(ledger, who):
    return -ledger.loc[ledger.participant == who, "amount"].sum()


def test_guarantee_tops_up_the_loser_from_the_gainer_and_balances():
    # a imports 1 kWh (0.20 $) where its top-down twin imported 0.5 kWh (0.10 $): it lost 0.10 $;
    # b imports nothing where its twin imported 1 kWh (0.20 $): it gained 0.20 $
    ledger = _settle(_guarantee_steps([("a", -2.0, 0.0, -1.0, 0.0), ("b", 0.0, 0.0, -2.0, 0.0)]))
    g = ledger[(ledger.item == "guarantee")].set_index(["participant", "counterparty"])["amount"]
    assert g[("a", "vpp_f")] == pytest.approx(0.10) and g[("vpp_f", "a")] == pytest.approx(-0.10)
    assert g[("b", "vpp_f")] == pytest.approx(-0.10) and g[("vpp_f", "b")] == pytest.approx(0.10)
    assert _cost(ledger, "a") == pytest.approx(0.10)  # exactly its top-down bill
    assert _cost(ledger, "b") == pytest.approx(0.10)  # still 0.10 $ better off than under top-down
    assert led.money_residual(ledger) == pytest.approx(0.0, abs=1e-12)
    assert led.vpp_balance_residual(ledger, ["vpp_f"]) == pytest.approx(0.0, abs=1e-12)


def test_a_community_that_lost_as_a_whole_is_covered_by_the_other_communities_gains():
    # vpp_f: a lost 0.30 $, c gained 0.10 $; vpp_g: b gained 0.80 $. Stage 1 (inside vpp_f): c pays a 0.10 $;
    # stage 2 (across VPPs): b pays the remaining 0.20 $, passed from vpp_g to vpp_f
    steps = pd.concat([_guarantee_steps([("a", -6.0, 0.0, -3.0, 0.0), ("c", -1.0, 0.0, -2.0, 0.0)]),
                       _guarantee_steps([("b", 0.0, 0.0, -8.0, 0.0)]).assign(feeder="g")], ignore_index=True)
    frames = {"ledger": pd.DataFrame(columns=led.COLUMNS), "prosumer_steps": steps, "trades": _trades([])}
    ledger = led.build_ledger(frames, TARIFF, START, {"vpp_f": 0.0, "vpp_g": 0.0},
                              {"a": "vpp_f", "c": "vpp_f", "b": "vpp_g"})
    g = ledger[ledger.item == "guarantee"].groupby(["participant", "counterparty"])["amount"].sum()
    assert g[("a", "vpp_f")] == pytest.approx(0.30) and g[("c", "vpp_f")] == pytest.approx(-0.10)
    assert g[("b", "vpp_g")] == pytest.approx(-0.20) and g[("vpp_f", "vpp_g")] == pytest.approx(0.20)
    assert [_cost(ledger, p) for p in "acb"] == pytest.approx([0.30, 0.20, 0.20])  # a and c at their reference
    assert led.money_residual(ledger) == pytest.approx(0.0, abs=1e-12)
    assert led.vpp_balance_residual(ledger, ["vpp_f", "vpp_g"]) == pytest.approx(0.0, abs=1e-12)


def test_guarantee_counts_the_energy_left_in_the_battery():
    # a paid 0.10 $ more than its twin, but the twin drained 1 kWh from the battery (refilling it costs
    # 1 / eta_charge x 0.20 $, runner.storage): a is not worse off, nobody is topped up
    ledger = _settle(_guarantee_steps([("a", -2.0, 5.0, -1.0, 4.0), ("b", 0.0, 0.0, -2.0, 0.0)]))
    cost, reference = led.guarantee_costs(ledger, _guarantee_steps([("a", -2.0, 5.0, -1.0, 4.0)]), TARIFF, START)
    assert cost["a"] == pytest.approx(0.20) and reference["a"] == pytest.approx(0.10 + 0.20 / ETA_CHARGE)
    assert not (ledger.item == "guarantee").any()


def test_guarantee_is_absent_without_a_top_down_reference():
    steps = _guarantee_steps([("a", -2.0, 0.0, float("nan"), float("nan"))])
    assert not (_settle(steps).item == "guarantee").any()


def test_guarantee_rule_when_gains_do_not_cover_losses():
    out = guarantee_transfers({"a": 1.3, "b": 0.9, "c": 2.0}, {"a": 1.0, "b": 1.0, "c": 2.0})
    assert out.transfers == pytest.approx({"a": 0.1, "b": -0.1})  # a lost 0.3, b gained only 0.1
    assert out.uncovered == pytest.approx(0.2)
    assert math.fsum(out.transfers.values()) == pytest.approx(0.0, abs=1e-15)


def test_guarantee_rule_spreads_the_cost_over_gainers_pro_rata():
    out = guarantee_transfers({"a": 1.3, "b": 0.0, "c": 1.7}, {"a": 1.0, "b": 0.6, "c": 2.0})
    # losses 0.3 (a); gains 0.6 (b) and 0.3 (c): b pays 0.2, c pays 0.1
    assert out.transfers == pytest.approx({"a": 0.3, "b": -0.2, "c": -0.1}) and out.uncovered == 0.0
    assert math.fsum(out.transfers.values()) == pytest.approx(0.0, abs=1e-15)


def test_guarantee_rule_rejects_a_member_without_a_reference():
    with pytest.raises(SettlementError, match=r"\['b'\] lack a cost or a reference"):
        guarantee_transfers({"a": 1.0, "b": 1.0}, {"a": 1.0})
