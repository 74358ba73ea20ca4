"""Layer I bids and VPP flexibility offers derived from a solved HEMS plan.

Limit-price rule (documented, always inside [buy-back, retail] of the bid slot):
the HEMS LP is solved with the utility's prices only, so the dual of the bid slot's energy balance is
the prosumer's marginal value of energy there, lambda (EUR/kWh; if the plan imports in that slot,
lambda = retail; if it exports, lambda = buy-back; if the battery or a flexible load is marginal, lambda
lies in between). The planned import is bid to BUY from peers at limit lambda (paying more would be
worse than the plan) and the planned export offered to SELL at limit lambda (selling for less would be
worse than the plan). Any P2P trade inside those limits leaves the prosumer at least as well off as
its utility-only plan. The VPP flexibility offer is the reserve the battery can hold around the plan
(the LP's ``rup/rdn`` of the bid slot), priced at lambda per kWh activated: an up-activation
discharges energy the prosumer values at lambda, a down-activation stores energy worth lambda to it.

SIGN CONVENTION (project-wide): ``planned_p_kw`` is the planned net injection of the prosumer into the
distribution network (+ export, - import), including committed P2P positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from federates.prosumer.hems import HemsPlan


@dataclass(frozen=True)
class Bid:
    """One prosumer's Layer I output for the bid slot."""

    prosumer: str
    slot: int
    buy_kwh: float
    buy_limit_price_per_kwh: float
    sell_kwh: float
    sell_limit_price_per_kwh: float
    flex_up_kw: float
    flex_down_kw: float
    flex_price_per_kwh: float
    planned_p_kw: tuple[float, float]
    """Planned net injection (+ export) for the two 15-min halves of the slot."""


_TINY_KWH = 1e-6


def make_bid(
    prosumer: str,
    slot: int,
    plan: HemsPlan,
    *,
    slot_h: float,
    retail_per_kwh: float,
    buyback_per_kwh: float,
    p2p_buy_kw: float,
    p2p_enabled: bool,
    vpp_enabled: bool,
) -> Bid:
    """Bid for slot ``slot`` from horizon index 0 of ``plan``; ``p2p_buy_kw`` = committed P2P purchase."""
    value = limit_price(plan.marginal_value_per_kwh, buyback_per_kwh, retail_per_kwh)
    return bid_from(prosumer, slot, plan.import_kw[0], plan.export_kw[0], plan.reserve_up_kw[0],
                    plan.reserve_down_kw[0], float(value), fallback=plan.fallback, slot_h=slot_h,
                    p2p_buy_kw=p2p_buy_kw, p2p_enabled=p2p_enabled, vpp_enabled=vpp_enabled)


def limit_price(marginal_value_per_kwh, buyback_per_kwh: float, retail_per_kwh: float):
    """The limit price of both orders and the flexibility price: the marginal value of energy kept inside
    [buy-back, retail] (numpy: one value or an array of them)."""
    return np.clip(marginal_value_per_kwh, buyback_per_kwh, retail_per_kwh)


def bid_from(
    prosumer: str,
    slot: int,
    import_kw: float,
    export_kw: float,
    reserve_up_kw: float,
    reserve_down_kw: float,
    value: float,
    *,
    fallback: bool,
    slot_h: float,
    p2p_buy_kw: float,
    p2p_enabled: bool,
    vpp_enabled: bool,
) -> Bid:
    """:func:`make_bid` from the bid slot's values of a plan (import, export, reserve up and down kW), its
    :func:`limit_price` and whether it is the grid-only fallback."""
    buy = float(import_kw) * slot_h if p2p_enabled and not fallback else 0.0
    sell = float(export_kw) * slot_h if p2p_enabled and not fallback else 0.0
    offer = vpp_enabled and not fallback
    p_kw = float(export_kw - import_kw - p2p_buy_kw)
    return Bid(
        prosumer=prosumer,
        slot=slot,
        buy_kwh=buy if buy > _TINY_KWH else 0.0,
        buy_limit_price_per_kwh=value,
        sell_kwh=sell if sell > _TINY_KWH else 0.0,
        sell_limit_price_per_kwh=value,
        flex_up_kw=max(0.0, float(reserve_up_kw)) if offer else 0.0,
        flex_down_kw=max(0.0, float(reserve_down_kw)) if offer else 0.0,
        flex_price_per_kwh=value,
        planned_p_kw=(p_kw, p_kw),
    )


def bids_from(
    prosumers: Sequence[str],
    slot: int,
    import_kw: np.ndarray,
    export_kw: np.ndarray,
    reserve_up_kw: np.ndarray,
    reserve_down_kw: np.ndarray,
    value: np.ndarray,
    fallback: np.ndarray,
    *,
    slot_h: float,
    p2p_buy_kw: np.ndarray,
    p2p_enabled: bool,
    vpp_enabled: bool,
) -> list[Bid]:
    """:func:`bid_from` of many prosumers at once (arrays, one element each; the same values, element by
    element)."""
    usable = ~fallback
    buy = np.where(usable & p2p_enabled, import_kw * slot_h, 0.0)
    sell = np.where(usable & p2p_enabled, export_kw * slot_h, 0.0)
    offer = usable & vpp_enabled
    up = np.where(offer, np.where(reserve_up_kw > 0.0, reserve_up_kw, 0.0), 0.0)  # max(0.0, x), as bid_from
    down = np.where(offer, np.where(reserve_down_kw > 0.0, reserve_down_kw, 0.0), 0.0)
    p_kw = export_kw - import_kw - p2p_buy_kw
    cols = (np.where(buy > _TINY_KWH, buy, 0.0), np.where(sell > _TINY_KWH, sell, 0.0), up, down, value, p_kw)
    return [Bid(prosumer=name, slot=slot, buy_kwh=b, buy_limit_price_per_kwh=v, sell_kwh=s,
                sell_limit_price_per_kwh=v, flex_up_kw=u, flex_down_kw=d, flex_price_per_kwh=v, planned_p_kw=(p, p))
            for name, b, s, u, d, v, p in zip(prosumers, *(c.tolist() for c in cols), strict=True)]
