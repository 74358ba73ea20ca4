"""The data behind the report's figures: plain pandas functions of a run's tables, testable on hand-sized frames.

Money is in $ with the ledger's sign turned round where a *cost* is asked for: a bill item > 0 is paid, < 0 is
received, and a prosumer's items sum to its ``total_cost`` (``results/prosumer_kpis.csv``). Powers follow the
project's sign convention (``federates/common/messages.py``); times are seconds since the scenario start.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from federates.common.timebase import L1_PERIOD_S, L2_PERIOD_S, TICK_S
from federates.prosumer.devices import TariffConfig
from runner import ledger as led
from runner import storage

TICK_H = TICK_S / 3600
SLOT_H = L2_PERIOD_S / 3600

# ---------------------------------------------------------------------------------------------------------------
# bills

# (column, label, colour): every item a prosumer's bill can hold, in the order they are stacked
BILL_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("utility_import", "utility: energy bought", "#d62728"),
    ("utility_export", "utility: export credit", "#2ca02c"),
    ("p2p_purchase", "P2P: energy bought", "#ff7f0e"),
    ("p2p_sale", "P2P: energy sold", "#17becf"),
    ("network_fee", "P2P: network fees", "#8c564b"),
    ("activation_compensation", "VPP: compensation for energy delivered on request", "#bcbd22"),
    ("share_ancillary", "VPP share: ancillary payments", "#1f77b4"),
    ("share_penalty", "VPP share: ancillary penalties", "#e377c2"),
    ("share_l3", "VPP share: Layer III trades", "#9467bd"),
    ("share_activation", "VPP share: compensation it paid its members", "#dbdb8d"),
    ("share_battery_energy", "VPP share: community battery's energy", "#aec7e8"),
    ("share_fee", "VPP share: platform fee", "#7f7f7f"),
    ("share_other", "VPP share: other", "#c7c7c7"),
    ("guarantee", "VPP guarantee transfer", "#000080"),
    ("stored_energy", "stored energy drawn (own battery, valued)", "#ffbb78"),
    ("community_stored", "stored energy drawn (share of the community battery)", "#c5b0d5"),
    ("other", "other ledger items", "#f7b6d2"),
)
BILL_LABEL = {k: label for k, label, _ in BILL_ITEMS}
BILL_COLOUR = {k: colour for k, _, colour in BILL_ITEMS}
DIRECT_ITEMS = ("utility_import", "utility_export", "p2p_purchase", "p2p_sale", "network_fee",
                "activation_compensation", "guarantee")
# a VPP's own ledger items (before it shares its income) -> the component of its members' revenue share
VPP_COMPONENT = {"penalty": "share_penalty", "l3_purchase": "share_l3", "l3_sale": "share_l3",
                 "network_fee": "share_l3", "activation_compensation": "share_activation",
                 "community_battery_energy": "share_battery_energy"}
NOT_INCOME = ("revenue_share", "platform_fee", "guarantee")  # a VPP's entries that pass money on, not income


def vpp_component(item: str) -> str:
    return "share_ancillary" if item.startswith("ancillary_") else VPP_COMPONENT.get(item, "share_other")


def revenue_share_split(ledger: pd.DataFrame) -> pd.DataFrame:
    """Each member's ``revenue_share`` split into what its VPP's income was made of (prosumer x component, $
    received).

    A VPP's income is the sum of its own entries before sharing (ancillary payments, penalties, Layer III
    trades and their wheeling fees, the activation compensation it paid, its community battery's energy); it keeps
    the platform fee (``platform_fee``) and shares the rest, so member *i*'s share ``s_i = w_i (income - fee)``.
    Component *c* of ``s_i`` is ``w_i x income_c`` and the fee ``- w_i x fee``; they sum to ``s_i`` exactly.
    """
    shares = ledger[(ledger["item"] == "revenue_share") & ~ledger["participant"].str.startswith("vpp_")]
    if shares.empty:
        return pd.DataFrame()
    out = []
    for vpp, mine in shares.groupby("counterparty"):
        own = ledger[ledger["participant"] == vpp]
        income = own[~own["item"].isin(NOT_INCOME)]
        components = income["amount"].groupby(income["item"].map(vpp_component)).sum()
        fee = -float(own.loc[own["item"] == "platform_fee", "amount"].sum())
        pot = float(components.sum()) - fee
        received = mine.groupby("participant")["amount"].sum()
        if abs(pot) < 1e-12:
            continue
        weight = received / pot
        split = pd.DataFrame(np.outer(weight, components), index=weight.index, columns=components.index)
        split["share_fee"] = -weight * fee
        out.append(split)
    return pd.concat(out).fillna(0.0) if out else pd.DataFrame()


def bill_items(ledger: pd.DataFrame, per_prosumer: pd.DataFrame) -> pd.DataFrame:
    """Per prosumer (rows of ``per_prosumer``, i.e. ``prosumer_kpis``): its cost by item ($, + = paid, - =
    received), columns as :data:`BILL_ITEMS`; the row sums are its ``total_cost``.

    Ledger items it holds itself are taken as they are, its ``revenue_share`` is split by
    :func:`revenue_share_split`, any other item goes to ``other``; the value of the change of stored energy
    (not a cash flow) comes from ``per_prosumer`` (``stored_energy_value``, ``community_battery_stored_value``).
    """
    names = pd.Index(per_prosumer["prosumer"] if len(per_prosumer) else [], name="prosumer")
    out = pd.DataFrame(0.0, index=names, columns=[k for k, _, _ in BILL_ITEMS])
    if len(names) == 0:
        return out
    mine = ledger[ledger["participant"].isin(names)]
    by_item = mine.groupby(["participant", "item"])["amount"].sum().unstack("item", fill_value=0.0)
    for item in by_item.columns:
        column = item if item in DIRECT_ITEMS else None if item == "revenue_share" else "other"
        if column:
            out[column] -= by_item[item].reindex(names).fillna(0.0)
    split = revenue_share_split(ledger)
    for column in split.columns:
        out[column] -= split[column].reindex(names).fillna(0.0)
    per = per_prosumer.set_index("prosumer")
    for column, source in (("stored_energy", "stored_energy_value"),
                           ("community_stored", "community_battery_stored_value")):
        if source in per:
            out[column] = -per[source].reindex(names).fillna(0.0)
    return out


def twin_bill_items(steps: pd.DataFrame, tariff: TariffConfig, start: datetime, eta: pd.DataFrame) -> pd.DataFrame:
    """Per prosumer: the bill by item of its top-down twin (``topdown_grid_kw`` and ``topdown_soc_kwh`` of
    ``prosumer_steps``): utility energy bought and export credit by the same net-billing rule as the run's own
    (:func:`runner.ledger.utility_entries`), and the value of the change of the twin's stored energy; the
    reference of the VPP's guarantee. Empty when the run has no twin (``topdown`` itself, ``netmetering``)."""
    bill, twin_end = led.topdown_reference(steps, tariff, start)
    if bill.empty:
        return pd.DataFrame(columns=[k for k, _, _ in BILL_ITEMS])
    twin = steps[["time", "prosumer", "topdown_grid_kw"]].rename(columns={"topdown_grid_kw": "grid_kw"})
    no_trades = pd.DataFrame(columns=["slot", "layer", "buyer", "seller", "energy_kwh"])
    entries = led.utility_entries(twin, no_trades, tariff, start)
    out = pd.DataFrame(0.0, index=bill.index.rename("prosumer"), columns=[k for k, _, _ in BILL_ITEMS])
    for item, amount in entries.groupby(["item", "participant"])["amount"].sum().items():
        out.loc[item[1], item[0]] -= amount
    bat = storage.batteries(steps, eta).reindex(out.index)
    prices = storage.stored_energy_prices(tariff, start, steps["time"])
    change = twin_end.reindex(out.index) - bat["battery_start_kwh"]
    out["stored_energy"] = -storage.stored_energy_value(change, bat["eta_charge"], bat["eta_discharge"], *prices)
    return out


def bill_selection(costs: pd.DataFrame, reference: pd.Series | None, *, keep: int = 40, each: int = 12
                   ) -> tuple[list[str], str]:
    """Which prosumers a bill figure shows: all of them (by name) up to ``keep``, else the ``each`` who saved
    most and the ``each`` who saved least against ``reference`` (or the cheapest and dearest without one).
    ``costs``: total cost per prosumer (index) in the run. Returns (names, what was chosen)."""
    names = sorted(costs.index)
    if len(names) <= keep:
        return names, f"all {len(names)} prosumers"
    if reference is not None and len(reference):
        key = (reference.reindex(costs.index) - costs).sort_values(kind="stable")
        what = f"the {each} who saved least and the {each} who saved most against top-down, of {len(names)}"
    else:
        key = costs.sort_values(kind="stable")
        what = f"the {each} cheapest and the {each} dearest of {len(names)} prosumers"
    chosen = list(key.index[:each]) + list(key.index[-each:])
    return list(dict.fromkeys(chosen)), what


# ---------------------------------------------------------------------------------------------------------------
# voltages


def voltage_profile(voltages: pd.DataFrame, placement: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Voltage along each feeder: per prosumer its distance from the source (``placement.distance_km``, NaN when
    not recorded) and, over the run, its lowest, median and highest service voltage and its voltage at the
    moment of the feeder's lowest and of its highest prosumer voltage (the earliest such moment on a tie).

    Returns (per prosumer: feeder, prosumer, distance_km, v_min_pu, v_median_pu, v_max_pu, v_at_low_pu,
    v_at_high_pu; per feeder: t_low_s, v_low_pu, t_high_s, v_high_pu)."""
    v = voltages.assign(v_pu=pd.to_numeric(voltages["v_pu"], errors="coerce")).dropna(subset=["v_pu"])
    columns = ["feeder", "prosumer", "distance_km", "v_min_pu", "v_median_pu", "v_max_pu", "v_at_low_pu",
               "v_at_high_pu"]
    if v.empty:
        return pd.DataFrame(columns=columns), pd.DataFrame(columns=["t_low_s", "v_low_pu", "t_high_s", "v_high_pu"])
    v = v.sort_values(["feeder", "time", "prosumer"], kind="stable")
    per = v.groupby(["feeder", "prosumer"])["v_pu"].agg(v_min_pu="min", v_median_pu="median", v_max_pu="max")
    extreme = v.groupby(["feeder", "time"], sort=True)["v_pu"].agg(["min", "max"])
    moments = pd.DataFrame({
        "t_low_s": extreme["min"].groupby(level="feeder").idxmin().map(lambda ix: ix[1]),
        "v_low_pu": extreme["min"].groupby(level="feeder").min(),
        "t_high_s": extreme["max"].groupby(level="feeder").idxmax().map(lambda ix: ix[1]),
        "v_high_pu": extreme["max"].groupby(level="feeder").max()})
    at = v.set_index(["feeder", "time", "prosumer"])["v_pu"]
    for column, moment in (("v_at_low_pu", "t_low_s"), ("v_at_high_pu", "t_high_s")):
        keys = [(f, moments.loc[f, moment], p) for f, p in per.index]
        per[column] = at.reindex(pd.MultiIndex.from_tuples(keys)).to_numpy()
    per = per.reset_index()
    sites = placement[placement["prosumer"].fillna("").astype(str) != ""] if len(placement) else placement
    km = pd.to_numeric(sites.set_index("prosumer")["distance_km"], errors="coerce") if len(sites) else pd.Series()
    per.insert(2, "distance_km", per["prosumer"].map(km).astype(float))
    return per[columns], moments


# ---------------------------------------------------------------------------------------------------------------
# ancillary services


def award_rows(anc: pd.DataFrame) -> pd.DataFrame:
    """The 15-minute clearing rows of the ``ancillary`` table (an offer price; the delivery rows have none)."""
    return anc[anc["offer_price"].notna()]


def delivery_rows(anc: pd.DataFrame) -> pd.DataFrame:
    """The 5-minute delivery rows of the ``ancillary`` table (no offer price, a delivered power)."""
    return anc[anc["offer_price"].isna() & anc["delivered_kw"].notna()]


def award_summary(anc: pd.DataFrame) -> pd.DataFrame:
    """Per VPP and product over the run: offered and awarded capacity (kW x h, from the 15-minute clearings),
    required and delivered energy (kWh, from the 5-minute deliveries: what the signal or deployment asked of the
    award and what the metered feeder gave in its direction), the accuracy ``1 - sum |delivered - required| /
    sum required`` over the run (the ISO's per-interval score, aggregated; NaN when nothing was required or
    ``required_kw`` was not recorded), the penalties ($) and how many intervals were penalised."""
    awards, deliveries = award_rows(anc), delivery_rows(anc)
    keys = ["vpp", "product"]
    out = pd.DataFrame({"offered_kwh": awards.groupby(keys)["offered_kw"].sum() * SLOT_H,
                        "awarded_kwh": awards.groupby(keys)["awarded_kw"].sum() * SLOT_H})
    d = deliveries.assign(error_kw=(deliveries["delivered_kw"] - deliveries["required_kw"]).abs())
    g = d.groupby(keys)
    out = out.join(pd.DataFrame({"required_kwh": g["required_kw"].sum(min_count=1) * TICK_H,
                                 "delivered_kwh": g["delivered_kw"].sum() * TICK_H,
                                 "error_kwh": g["error_kw"].sum(min_count=1) * TICK_H,
                                 "penalty": g["penalty"].sum(),
                                 "penalised_intervals": g["penalty"].apply(lambda s: int((s > 0).sum()))}),
                   how="outer")
    required = out["required_kwh"]
    out["accuracy"] = np.where(required > 1e-12, 1.0 - out["error_kwh"] / required.where(required > 1e-12), np.nan)
    out["accuracy"] = out["accuracy"].clip(lower=0.0)
    fill = ["offered_kwh", "awarded_kwh", "delivered_kwh", "penalty", "penalised_intervals"]
    out[fill] = out[fill].fillna(0.0)
    out["penalised_intervals"] = out["penalised_intervals"].astype(int)
    return out.drop(columns="error_kwh")


def award_series(anc: pd.DataFrame, *, by_vpp: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the 15-minute offers and awards: start_s of the slot they are for, vpp, product, offered_kw, awarded_kw;
    the 5-minute deliveries: start_s of the interval, vpp, product, awarded_kw, required_kw, delivered_kw,
    penalty), per VPP or summed over the VPPs (``by_vpp`` False, VPP ``all VPPs``) for a readable figure."""
    awards = award_rows(anc)
    awards = pd.DataFrame({"start_s": awards["slot"] * L2_PERIOD_S, "vpp": awards["vpp"],
                           "product": awards["product"], "offered_kw": awards["offered_kw"],
                           "awarded_kw": awards["awarded_kw"]})
    d = delivery_rows(anc)
    deliveries = pd.DataFrame({"start_s": d["time"], "vpp": d["vpp"], "product": d["product"],
                               "awarded_kw": d["awarded_kw"], "required_kw": d["required_kw"],
                               "delivered_kw": d["delivered_kw"], "penalty": d["penalty"]})
    if not by_vpp:
        keys = ["start_s", "product"]
        awards = awards.groupby(keys, as_index=False)[["offered_kw", "awarded_kw"]].sum().assign(vpp="all VPPs")
        deliveries = deliveries.groupby(keys, as_index=False)[
            ["awarded_kw", "required_kw", "delivered_kw", "penalty"]].sum(min_count=1).assign(vpp="all VPPs")
    return (awards.sort_values(["vpp", "product", "start_s"], kind="stable").reset_index(drop=True),
            deliveries.sort_values(["vpp", "product", "start_s"], kind="stable").reset_index(drop=True))


# ---------------------------------------------------------------------------------------------------------------
# P2P prices


def p2p_price_slots(trades: pd.DataFrame) -> pd.DataFrame:
    """Per Layer I market and slot: traded energy (kWh), the energy-weighted mean price and the lowest and
    highest trade price ($/kWh), the number of trades, and the slot's start (s)."""
    l1 = trades[trades["layer"] == 1]
    columns = ["market", "slot", "start_s", "energy_kwh", "mean_price_per_kwh", "min_price_per_kwh",
               "max_price_per_kwh", "trades"]
    if l1.empty:
        return pd.DataFrame(columns=columns)
    l1 = l1.assign(value=l1["energy_kwh"] * l1["price_per_kwh"])
    g = l1.groupby(["market", "slot"])
    out = pd.DataFrame({"energy_kwh": g["energy_kwh"].sum(), "value": g["value"].sum(),
                        "min_price_per_kwh": g["price_per_kwh"].min(), "max_price_per_kwh": g["price_per_kwh"].max(),
                        "trades": g.size()}).reset_index()
    out["mean_price_per_kwh"] = np.where(out["energy_kwh"] > 0, out["value"] / out["energy_kwh"].where(
        out["energy_kwh"] > 0), (out["min_price_per_kwh"] + out["max_price_per_kwh"]) / 2)
    out["start_s"] = out["slot"] * L1_PERIOD_S
    return out[columns]
