"""What a VPP must deliver against its ancillary awards, and the Layer III orders that cover the gap.

Delivery is measured as the deviation of the members' metered net injection from the baseline the VPP declared
with its offers (+ = more injection = up). For interval n:

    required_kw = reg_up_kw * max(r, 0) - reg_down_kw * max(-r, 0) + spin_kw * s

with r the ISO regulation signal in [-1, 1] and s the spinning-reserve deployment fraction in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

HOURS_PER_S = 1.0 / 3600.0


def required_kw(awards_kw: dict[str, float], regulation: float, spin_deployed: float) -> float:
    return (awards_kw.get("reg_up", 0.0) * max(regulation, 0.0)
            - awards_kw.get("reg_down", 0.0) * max(-regulation, 0.0)
            + awards_kw.get("spin", 0.0) * spin_deployed)


@dataclass(frozen=True)
class L3Need:
    """A Layer III order: ``direction`` "up" (more injection) or "down"; ``side`` buy (short) or sell (spare)."""

    direction: str
    side: str
    energy_kwh: float
    limit_price_per_kwh: float


SPARE_SHARE = 0.5  # share of spare capability a VPP offers to others (the rest is its own safety margin)


def member_target_kw(required: float, credit_kw: float, drift_kw: float, up_kw: float, down_kw: float) -> float:
    """What the VPP asks of its members so that the metered deviation meets the requirement.

    Metered deviation = asked + drift, and Layer III credits count as delivery, so the members are asked
    ``required - credit - drift``, clamped to what they offered (``-down_kw`` .. ``up_kw``).
    """
    return min(max(required - credit_kw - drift_kw, -down_kw), up_kw)


def layer3_needs(required: float, up_capacity_kw: float, down_capacity_kw: float, drift_kw: float, *,
                 period_s: int, penalty_price_per_kwh: float, spare_price_per_kwh: float,
                 min_kwh: float = 0.01) -> list[L3Need]:
    """Forecast the shortfall (or spare capability) for the next interval and turn it into orders.

    The VPP expects its members to counter the drift (``drift_kw``: the uncontrolled deviation seen last
    interval, persistence forecast) within their capability, so it expects to deliver
    ``member_target_kw(required, 0, drift, up, down) + drift``. What is still missing in the required
    direction is bought at up to the penalty it would otherwise pay; ``SPARE_SHARE`` of the capability left in
    either direction is offered at the members' price. Limit prices are therefore bounded by [members' energy
    value, penalty]. Nothing is bought when nothing is asked.
    """
    hours = period_s * HOURS_PER_S
    asked = member_target_kw(required, 0.0, drift_kw, up_capacity_kw, down_capacity_kw)
    gap = required - (asked + drift_kw)            # > 0: need more injection; < 0: need less
    needs: list[L3Need] = []
    if required > 0 and gap > 0:
        needs.append(L3Need("up", "buy", gap * hours, penalty_price_per_kwh))
    elif required < 0 and gap < 0:
        needs.append(L3Need("down", "buy", -gap * hours, penalty_price_per_kwh))
    spare = {"up": max(up_capacity_kw - max(asked, 0.0), 0.0), "down": max(down_capacity_kw - max(-asked, 0.0), 0.0)}
    for direction, kw in spare.items():
        energy = SPARE_SHARE * kw * hours
        if energy >= min_kwh and not any(n.direction == direction for n in needs):
            needs.append(L3Need(direction, "sell", energy, spare_price_per_kwh))
    return [n for n in needs if n.energy_kwh >= min_kwh]
