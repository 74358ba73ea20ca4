"""The settlement ledger of a run, and the checks that it balances.

``results/ledger`` (time, participant, counterparty, item, energy_kwh, amount): ``amount`` is $ received by
``participant`` (negative = paid). Trades and their fees are written by the federate that cleared them;
ancillary payments and penalties by the ISO; this module adds the utility bills, the VPPs' revenue
shares and their guarantee:

- **Utility** (net billing per Layer I slot): ``utility_net_kwh = metered net export + P2P bought - P2P
  sold``; a surplus is credited at the buy-back rate (``utility_export``), a deficit charged at the slot's
  retail rate (``utility_import``); under net metering the surplus is credited at that retail rate. A prosumer
  who sold more to peers than it exported buys the rest from the utility.
- **VPP revenue share** (non-profit): each VPP's net income (ancillary payments - penalties + Layer III sales
  - Layer III purchases - the ``activation_compensation`` it paid members for energy delivered on request,
  written by the VPP federate, see ``CommunityVpp.activation_cost``), less the documented platform fee
  (``fee_fraction``, item ``platform_fee``), is paid to members pro rata to the reserve capacity they held
  (kW x h, up + down). A negative remainder (penalties) is shared by the same rule.
- **Guarantee** ("nobody worse off", item ``guarantee``): after the revenue shares each VPP settles every
  member against the bill the same member would have paid under top-down (same devices, weather, loads and
  controller, utility tariff only), computed from its top-down twin's metered power (``topdown_grid_kw`` of
  ``results/prosumer_steps``, billed by the same net-billing rule); both costs net of the value of the change of
  stored energy, as ``total_cost`` counts it (:mod:`runner.storage`). Members who paid more are topped up to their
  reference, financed by the members who gained, pro rata to their gains
  (:func:`federates.vpp.aggregation.guarantee_transfers`); what a community that lost as a whole cannot cover
  is covered by the other communities' remaining gains (:func:`guarantee_entries`); a loss all the gains cannot
  cover is logged and stays visible in ``prosumers_losing_money_pct``.

Money enters or leaves only through ``EXTERNAL`` counterparties (the utility, the ISO, the network operator's
fees, the platform's costs); every other payment is written twice, once for each side, so the internal
entries sum to zero (``money_balance_residual``).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from federates.common.errors import SettlementError
from federates.common.timebase import local_hour
from federates.prosumer.devices import TariffConfig
from federates.vpp.aggregation import guarantee_transfers, share_revenue
from runner import storage

EXTERNAL = ("utility", "iso", "network_operator", "platform_costs")
TICK_H = 300 / 3600
SLOT_S = 1800
COLUMNS = ["time", "participant", "counterparty", "item", "energy_kwh", "amount"]

logger = logging.getLogger(__name__)


def utility_entries(steps: pd.DataFrame, trades: pd.DataFrame, tariff: TariffConfig, start) -> pd.DataFrame:
    cols = COLUMNS
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
    held = storage.reserve_held_kwh(steps)
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


def topdown_reference(steps: pd.DataFrame, tariff: TariffConfig, start) -> tuple[pd.Series, pd.Series]:
    """Per prosumer: the utility bill ($ paid, net billing) of its top-down twin and the energy in the twin's
    battery after the last step (kWh); empty when the steps carry no top-down columns (netmetering)."""
    if steps.empty or "topdown_grid_kw" not in steps or steps["topdown_grid_kw"].isna().any():
        return pd.Series(dtype=float), pd.Series(dtype=float)
    twin = steps[["time", "prosumer", "topdown_grid_kw"]].rename(columns={"topdown_grid_kw": "grid_kw"})
    no_trades = pd.DataFrame(columns=["slot", "layer", "buyer", "seller", "energy_kwh"])
    bills = utility_entries(twin, no_trades, tariff, start)
    names = pd.Index(sorted(steps["prosumer"].unique()))
    bill = -bills.groupby("participant")["amount"].sum().reindex(names).fillna(0.0)
    soc = storage.in_time_order(steps[["time", "prosumer", "topdown_soc_kwh"]]).groupby("prosumer")[
        "topdown_soc_kwh"].last().reindex(names)
    return bill, soc


def guarantee_costs(ledger: pd.DataFrame, steps: pd.DataFrame, tariff: TariffConfig, start,
                    eta: pd.DataFrame | None = None, community: pd.Series | None = None
                    ) -> tuple[pd.Series, pd.Series]:
    """Per prosumer, (cost in this run, cost of its top-down twin), both as ``runner.results`` defines
    ``total_cost``: $ paid net of everything received minus the value of the change of stored energy
    (:mod:`runner.storage`; both start from the same stored energy), its share of its VPP's community battery's
    included (``community``, :func:`runner.storage.community_battery_stored_value`). ``eta``: battery
    efficiencies per prosumer (default: inferred from the SOC records). Empty without a top-down reference."""
    bill, twin_end = topdown_reference(steps, tariff, start)
    if bill.empty:
        return bill, bill
    bat = storage.batteries(steps, eta if eta is not None else storage.inferred_efficiencies(steps)).reindex(bill.index)
    prices = storage.stored_energy_prices(tariff, start, steps["time"])

    def value(end_kwh: pd.Series) -> pd.Series:
        change = end_kwh - bat["battery_start_kwh"]
        return pd.Series(storage.stored_energy_value(change, bat["eta_charge"], bat["eta_discharge"], *prices),
                         index=bill.index)

    paid = -ledger.groupby("participant")["amount"].sum().reindex(bill.index).fillna(0.0)
    shared = community.reindex(bill.index).fillna(0.0) if community is not None else 0.0
    return paid - value(bat["battery_end_kwh"]) - shared, bill - value(twin_end)


def guarantee_entries(ledger: pd.DataFrame, steps: pd.DataFrame, tariff: TariffConfig, start,
                      members: dict[str, str], vpps: list[str], eta: pd.DataFrame | None = None,
                      community: pd.Series | None = None) -> pd.DataFrame:
    """The VPPs' guarantee (item ``guarantee``), every member's cost against its top-down reference
    (:func:`guarantee_costs`), in two stages of :func:`federates.vpp.aggregation.guarantee_transfers`:

    1. inside each VPP: its losers are topped up by its gainers;
    2. across VPPs, only if a community as a whole did worse than top-down: what stage 1 left uncovered is
       topped up by the gains the members of the other communities still hold, pro rata; each VPP passes its
       members' stage-2 payments on to the VPPs whose members receive them (``vpp_a`` -> ``vpp_b`` entries).

    Every payment is written for both sides at the end of the run, so the VPPs keep nothing."""
    cost, reference = guarantee_costs(ledger, steps, tariff, start, eta, community)
    if cost.empty:
        return pd.DataFrame(columns=COLUMNS)
    end = int(steps["time"].max()) + 300  # an integer time, as the recorded entries have
    mine = {v: sorted(p for p, w in members.items() if w == v and p in cost.index) for v in vpps}
    rows, uncovered = [], 0.0
    for vpp in vpps:
        if mine[vpp]:
            outcome = guarantee_transfers(cost[mine[vpp]].to_dict(), reference[mine[vpp]].to_dict())
            rows += _member_rows(outcome.transfers, members, end)
            cost = cost.sub(pd.Series(outcome.transfers, dtype=float), fill_value=0.0)
            uncovered += outcome.uncovered
    if uncovered > 0:
        everyone = sorted(p for v in vpps for p in mine[v])
        outcome = guarantee_transfers(cost[everyone].to_dict(), reference[everyone].to_dict())
        rows += _member_rows(outcome.transfers, members, end) + _between_vpps(outcome.transfers, members, end)
        if outcome.uncovered > 0:
            logger.warning("the members' gains do not cover their losses against top-down; %.4f $ of losses "
                           "stay uncovered", outcome.uncovered)
    return pd.DataFrame(rows, columns=COLUMNS)


def _member_rows(transfers: dict[str, float], members: dict[str, str], end: int) -> list[tuple]:
    """Both sides of each transfer between a member and its VPP (+ = paid to the member)."""
    rows = []
    for member, amount in transfers.items():
        rows.append((end, member, members[member], "guarantee", 0.0, amount))
        rows.append((end, members[member], member, "guarantee", 0.0, -amount))
    return rows


def _between_vpps(transfers: dict[str, float], members: dict[str, str], end: int) -> list[tuple]:
    """Settle the VPPs' net positions from ``transfers``: a VPP that paid out more to its members than it
    collected from them (``net`` > 0) is paid by those that collected more, pro rata to what they collected."""
    net: dict[str, float] = {}
    for member, amount in transfers.items():
        net[members[member]] = net.get(members[member], 0.0) + amount
    owed = math.fsum(v for v in net.values() if v > 0)
    rows = []
    for payer, n_pay in sorted(net.items()):
        for payee, n_get in sorted(net.items()):
            if n_pay < 0 < n_get:
                x = -n_pay * n_get / owed
                rows.append((end, payee, payer, "guarantee", 0.0, x))
                rows.append((end, payer, payee, "guarantee", 0.0, -x))
    return rows


def build_ledger(frames: dict[str, pd.DataFrame], tariff: TariffConfig, start, fee_fraction: dict[str, float],
                 members: dict[str, str], *, eta: pd.DataFrame | None = None) -> pd.DataFrame:
    """Recorded entries + utility bills + the VPPs' revenue shares + their guarantee (VPPs: the keys of
    ``fee_fraction``; none in the modes without a market; ``eta``: see :func:`guarantee_costs`). The community
    batteries' energy is in the recorded entries (item ``community_battery_energy``, VPP <-> utility) and so in
    the revenue shares; their stored energy enters the guarantee as each member's share of it."""
    recorded, steps = frames["ledger"], frames["prosumer_steps"]
    community = None
    if len(frames.get("community_battery", ())) and len(steps):
        prices = storage.stored_energy_prices(tariff, start, steps["time"])
        community = storage.community_battery_stored_value(frames["community_battery"], steps, members, prices)
    utility = utility_entries(steps, frames["trades"], tariff, start)
    ledger = _concat(recorded, utility)
    ledger = _concat(ledger, revenue_share_entries(ledger, steps, fee_fraction, members))
    ledger = _concat(ledger, guarantee_entries(ledger, steps, tariff, start, members, sorted(fee_fraction), eta,
                                               community))
    return ledger.sort_values("time", kind="stable").reset_index(drop=True)


def _concat(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    parts = [df for df in (a, b) if len(df)]
    return pd.concat(parts, ignore_index=True) if parts else a


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
