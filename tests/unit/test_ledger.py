from datetime import datetime

import pandas as pd
import pytest

from federates.prosumer.devices import TariffConfig, TouPeriod
from runner import ledger as led

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
