"""The settlement ledger of a run, and the checks that it balances.

``results/ledger`` (time, participant, counterparty, item, energy_kwh, amount): ``amount`` is $ received by
``participant`` (negative = paid). Trades and their fees are written by the federate that cleared them;
ancillary payments and penalties by the ISO; this module adds the utility bills and the VPPs' revenue
shares:

- **Utility** (net billing per Layer I slot): ``utility_net_kwh = metered net export + P2P bought - P2P
  sold``; a surplus is credited at the buy-back rate (``utility_export``), a deficit charged at the slot's
  retail rate (``utility_import``); under net metering the surplus is credited at that retail rate. A prosumer
  who sold more to peers than it exported buys the rest from the utility.
- **VPP revenue share** (non-profit): each VPP's net income (ancillary payments - penalties + Layer III sales
  - Layer III purchases - the ``activation_compensation`` it paid members for energy delivered on request,
  written by the VPP federate, see ``CommunityVpp.activation_cost``), less the documented platform fee
  (``fee_fraction``, item ``platform_fee``), is paid to members pro rata to the reserve capacity they held
  (kW x h, up + down). A negative remainder (penalties) is shared by the same rule.

Money enters or leaves only through ``EXTERNAL`` counterparties (the utility, the ISO, the network operator's
fees, the platform's costs); every other payment is written twice, once for each side, so the internal
entries sum to zero (``money_balance_residual``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from federates.common.errors import SettlementError
from federates.common.timebase import local_hour
from federates.prosumer.devices import TariffConfig
from federates.vpp.aggregation import share_revenue

EXTERNAL = ("utility", "iso", "network_operator", "platform_costs")
TICK_H = 300 / 3600
SLOT_S = 1800


def utility_entries(steps: pd.DataFrame, trades: pd.DataFrame, tariff: TariffConfig, start) -> pd.DataFrame:
    cols = ["time", "participant", "counterparty", "item", "energy_kwh", "amount"]
    if steps.empty:
        return pd.DataFrame(columns=cols)
    slot = (steps["time"] // SLOT_S).astype(int)
    metered = (steps["grid_kw"] * TICK_H).groupby([steps["prosumer"], slot]).sum()
    metered.index.names = ["prosumer", "slot"]
    l1 = trades[trades["layer"] == 1]
    bought = l1.groupby([l1["buyer"].rename("prosumer"), l1["slot"]])["energy_kwh"].sum()
    sold = l1.groupby([l1["seller"].rename("prosumer"), l1["slot"]])["energy_kwh"].sum()
    net = metered.add(bought, fill_value=0.0).sub(sold, fill_value=0.0)
    net = net[net.index.isin(metered.index)]
    slots = net.index.get_level_values("slot").to_numpy()
    hour = local_hour(start, slots * SLOT_S)
    retail = tariff.retail_array(hour)
    credit = tariff.export_price_array(hour)
    e = net.to_numpy()
    export = e > 0
    out = pd.DataFrame({
        "time": slots * SLOT_S,
        "participant": net.index.get_level_values("prosumer"),
        "counterparty": "utility",
        "item": np.where(export, "utility_export", "utility_import"),
        "energy_kwh": np.abs(e),
        "amount": np.where(export, e * credit, e * retail),
    })
    return out[out["energy_kwh"] > 1e-9][cols]  # float dust of exactly netted slots is not a bill


def revenue_share_entries(ledger: pd.DataFrame, steps: pd.DataFrame, fee_fraction: dict[str, float],
                          members: dict[str, str]) -> pd.DataFrame:
    """Pass each VPP's net income (after the activation compensation it already paid) to its members
    (``members``: prosumer -> vpp), pro rata to the reserve each member held, less the platform fee."""
    rows = []
    held = ((steps["reserve_up_kw"] + steps["reserve_down_kw"]) * TICK_H).groupby(steps["prosumer"]).sum() \
        if len(steps) else pd.Series(dtype=float)
    end = float(steps["time"].max()) + 300 if len(steps) else 0.0
    for vpp, fee in fee_fraction.items():
        mine = [p for p, v in members.items() if v == vpp]
        income = float(ledger.loc[ledger["participant"] == vpp, "amount"].sum())
        if abs(income) < 1e-12:
            continue
        shares = share_revenue(income, held.reindex(mine).fillna(0.0).to_dict(), fee_fraction=fee)
        kept = income - math.fsum(shares.values())
        if kept:
            rows.append((end, vpp, "platform_costs", "platform_fee", 0.0, -kept))
        for member, share in shares.items():
            rows.append((end, vpp, member, "revenue_share", 0.0, -share))
            rows.append((end, member, vpp, "revenue_share", 0.0, share))
    return pd.DataFrame(rows, columns=["time", "participant", "counterparty", "item", "energy_kwh", "amount"])


def build_ledger(frames: dict[str, pd.DataFrame], tariff: TariffConfig, start, fee_fraction: dict[str, float],
                 members: dict[str, str]) -> pd.DataFrame:
    recorded = frames["ledger"]
    utility = utility_entries(frames["prosumer_steps"], frames["trades"], tariff, start)
    ledger = pd.concat([df for df in (recorded, utility) if len(df)], ignore_index=True) \
        if len(recorded) or len(utility) else recorded
    shares = revenue_share_entries(ledger, frames["prosumer_steps"], fee_fraction, members)
    if len(shares):
        ledger = pd.concat([ledger, shares], ignore_index=True)
    return ledger.sort_values("time", kind="stable").reset_index(drop=True)


def money_residual(ledger: pd.DataFrame) -> float:
    """Sum of all payments between internal parties: zero when every payment has its opposite entry."""
    internal = ~ledger["participant"].isin(EXTERNAL) & ~ledger["counterparty"].isin(EXTERNAL)
    return float(ledger.loc[internal, "amount"].sum())


def vpp_balance_residual(ledger: pd.DataFrame, vpps: list[str]) -> float:
    """A non-profit VPP keeps nothing: its entries net to zero once revenue is shared."""
    return float(sum(abs(ledger.loc[ledger["participant"] == v, "amount"].sum()) for v in vpps))


def market_energy_residual(bids: pd.DataFrame, trades: pd.DataFrame) -> float:
    """Per market and slot (Layer I slots, Layer III intervals): matched buy energy = matched sell energy =
    traded energy (kWh, worst case)."""
    worst = 0.0
    if len(bids):
        acc = bids.groupby(["market", "slot", "side"])["matched_kwh"].sum().unstack("side", fill_value=0.0)
        for side in ("buy", "sell"):
            if side not in acc:
                acc[side] = 0.0
        worst = float((acc["buy"] - acc["sell"]).abs().max())
        traded_kwh = trades.groupby(["market", "slot"])["energy_kwh"].sum()
        traded = acc["buy"].sub(traded_kwh, fill_value=0.0)
        worst = max(worst, float(traded.abs().max()) if len(traded) else 0.0)
    return worst


def feeder_energy_residual(feeder: pd.DataFrame) -> float:
    """Head energy - (energy drawn by all loads and DER, prosumers metered) - losses, kWh over the run."""
    ok = feeder[feeder["converged"].astype(bool)]
    return float(((ok["p_head_kw"] - ok["loads_kw"] - ok["losses_kw"]) * TICK_H).sum())


def check(residuals: dict[str, float], *, tol: float = 1e-6) -> None:
    bad = {k: v for k, v in residuals.items() if not abs(v) <= tol}
    if bad:
        raise SettlementError("the run does not balance: " + ", ".join(f"{k} = {v:.3g}" for k, v in bad.items())
                              + f" (tolerance {tol:g}); see results/ledger.csv")
