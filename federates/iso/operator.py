"""The ISO as a plain object: clears each 15-minute slot, signals each 5-minute interval, settles delivery.

Delivery of a VPP in interval n is measured from the feeder's metered data: the members' net injection minus
the baseline the VPP declared with its offers, plus the injection credited to it by Layer III trades
(``credit_kwh`` per 5 minutes). The signed delivery is attributed to products in their own direction: up
delivery to reg_up and spin in proportion to what each was asked, down delivery to reg_down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from federates.common.config import IsoConfig
from federates.common.messages import AncillaryOffer
from federates.iso.ancillary_market import SupplyOffer, clear_ancillary, synthetic_supply_stack
from federates.iso.settlement import IntervalSettlement, regulation_signal, required_kw, reserve_events, settle_interval

TICK_S = 300
UP = ("reg_up", "spin")


@dataclass
class SlotClearing:
    prices: dict[str, float]
    awards: dict[str, dict[str, float]]       # vpp -> product -> kW


@dataclass
class IsoOperator:
    config: IsoConfig
    vpps: list[str]
    start: datetime
    duration_s: int
    seed: int
    cleared: dict[int, SlotClearing] = field(default_factory=dict)
    baselines: dict[int, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self):
        # federates.iso.prices (pandas) is imported only with a price or regulation file: ~0.4 CPU-s at the start
        # of every ISO that has none
        n = self.duration_s // TICK_S + 1
        self.stack = synthetic_supply_stack(self.seed, self.config.requirement_kw,
                                            n_units=self.config.conventional_units)
        if self.config.regulation_csv is not None:
            from federates.iso.prices import load_regulation_csv, price_at

            table = load_regulation_csv(self.config.regulation_csv)
            self.regulation = np.array([price_at(table, self.start + timedelta(seconds=k * TICK_S))["regulation"]
                                        for k in range(n - 1)] + [0.0])
        else:
            self.regulation = regulation_signal(self.seed + 1, n)
        self.spin = reserve_events(self.seed + 2, n)
        self.price_table = None
        if self.config.prices == "csv":
            from federates.iso.prices import load_price_csv

            self.price_table = load_price_csv(self.config.price_csv)

    def clear(self, slot: int, offers: list[AncillaryOffer]) -> SlotClearing:
        """Clear slot ``slot`` with the conventional stack and the VPP offers (or take CSV prices)."""
        self.baselines[slot] = {o.vpp: o.baseline_p_kw for o in offers}
        vpp_offers = [SupplyOffer(name=o.vpp, capacity_kw=sum(o.offered_kw.get(p, 0.0) for p in UP),
                                  price_per_mw_h={p: v for p, v in o.offer_price_per_mw_h.items()
                                                  if o.offered_kw.get(p, 0.0) > 0},
                                  max_kw={p: v for p, v in o.offered_kw.items() if v > 0})
                      for o in offers if any(v > 0 for v in o.offered_kw.values())]
        if self.price_table is None:
            result = clear_ancillary(self.stack + vpp_offers, self.requirement(slot))
            prices = result.clearing_price_per_mw_h
            awards = {o.name: result.awards_kw.get(o.name, {}) for o in vpp_offers}
        else:
            from federates.iso.prices import price_at

            prices = price_at(self.price_table, self.start + timedelta(seconds=slot * 900))
            awards = {o.name: {p: kw if o.price_per_mw_h[p] <= prices.get(p, 0.0) else 0.0
                               for p, kw in o.max_kw.items()} for o in vpp_offers}
        clearing = SlotClearing({p: float(prices.get(p, 0.0)) for p in self.config.requirement_kw},
                                {v: awards.get(v, {}) for v in self.vpps})
        self.cleared[slot] = clearing
        return clearing

    def requirement(self, slot: int) -> dict[str, float]:
        """Requirement of 15-minute ``slot``: ``requirement_kw`` x the hourly profile (local time)."""
        moment = self.start + timedelta(seconds=slot * 900)
        factor = self.config.requirement_profile[moment.hour]
        return {p: kw * factor for p, kw in self.config.requirement_kw.items()}

    def signal(self, interval: int) -> tuple[float, float]:
        return float(self.regulation[interval]), float(self.spin[interval])

    def settle(self, interval: int, vpp: str, members_p_kw: float, credit_kwh: float
               ) -> tuple[IntervalSettlement, dict[str, float], dict[str, float]] | None:
        """Settle one VPP for one interval; returns (settlement, required per product, delivered per product)."""
        slot = interval // 3
        clearing = self.cleared.get(slot)
        awards = clearing.awards.get(vpp, {}) if clearing else {}
        awards = {p: kw for p, kw in awards.items() if kw > 0}
        if not awards:
            return None
        reg, spin = self.signal(interval)
        required = required_kw(awards, reg, bool(spin))
        delivered_signed = (members_p_kw - self.baselines[slot].get(vpp, 0.0)
                            + credit_kwh * 3600.0 / TICK_S)
        delivered = attribute(delivered_signed, required)
        return settle_interval(awards, clearing.prices, required, delivered,
                               penalty_multiplier=self.config.penalty_multiplier), required, delivered


def attribute(delivered_signed_kw: float, required: dict[str, float]) -> dict[str, float]:
    """Split a signed delivery into non-negative magnitudes per product, in each product's direction."""
    up = max(delivered_signed_kw, 0.0)
    asked_up = sum(required.get(p, 0.0) for p in UP)
    out = {}
    for p in required:
        if p == "reg_down":
            out[p] = max(-delivered_signed_kw, 0.0)
        else:
            out[p] = up * required[p] / asked_up if asked_up > 0 else 0.0
    return out
