"""Layer II bookkeeping of a community VPP: members' flexibility, the feeder overflow, award disaggregation
and revenue sharing.

Sign convention: power is positive when INJECTED INTO THE NETWORK by the named element; a member's
``planned_p_kw`` > 0 is a planned net export, < 0 a net import. ``up_kw`` / ``down_kw`` are non-negative
magnitudes: how much more (up) or less (down) the member can inject than planned, held over a whole slot.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from federates.common.errors import ConfigError, SettlementError


class MemberFlex(NamedTuple):
    """What one prosumer offers the VPP for a slot (kW held over the whole slot).

    ``price_per_kwh`` is the member's ask for holding 1 kW of up flexibility for 1 hour ($/kW-h, i.e. $/kWh
    of reserved capacity; 0.02 $/kWh equals 20 $/MW-h), ``down_price_per_kwh`` its ask for down flexibility
    (None: the same). A named tuple: immutable, and cheap to make (a VPP makes thousands every 15 minutes).
    """

    member: str
    up_kw: float
    down_kw: float
    price_per_kwh: float
    planned_p_kw: float
    down_price_per_kwh: float | None = None

    @property
    def down_ask_per_kwh(self) -> float:
        return self.price_per_kwh if self.down_price_per_kwh is None else self.down_price_per_kwh

    def problems(self) -> list[str]:
        """Every invalid field, one line each (empty if valid)."""
        if (0 <= self.up_kw < math.inf and 0 <= self.down_kw < math.inf and 0 <= self.price_per_kwh < math.inf
                and 0 <= self.down_ask_per_kwh < math.inf and -math.inf < self.planned_p_kw < math.inf):
            return []
        out = [f"member {self.member!r}: {name} = {value!r}; give a finite value >= 0"
               for name, value in (("up_kw", self.up_kw), ("down_kw", self.down_kw),
                                   ("price_per_kwh", self.price_per_kwh),
                                   ("down_price_per_kwh", self.down_ask_per_kwh))
               if not (math.isfinite(value) and value >= 0)]
        if not math.isfinite(self.planned_p_kw):
            out.append(f"member {self.member!r}: planned_p_kw = {self.planned_p_kw!r}; give a finite value")
        return out


def validate_members(members: Iterable[MemberFlex]) -> None:
    """Raise one :class:`ConfigError` listing every invalid field and repeated member name."""
    members = list(members)
    counts = Counter(m.member for m in members)
    problems = [f"member name {n!r} appears {k} times; report each member once"
                for n, k in sorted(counts.items()) if k > 1]
    for m in members:
        problems += m.problems()
    if problems:
        raise ConfigError(problems, source="VPP members")


def overflow_kw(members: Iterable[MemberFlex]) -> float:
    """The community's net surplus (+, export to the grid) or deficit (-) for the slot: sum planned_p_kw."""
    return float(sum(m.planned_p_kw for m in members))


def disaggregate(award_kw: float, offers: Mapping[str, float]) -> dict[str, float]:
    """Split an ISO award over the members who offered it, pro rata to their offered kW.

    Rule: member i gets ``min(award, total) * offer_i / total`` with ``total = sum offers``. So nobody is
    asked for more than they offered and the shares sum to the award (or to ``total`` when the award
    exceeds what was offered; the ISO never awards more than the VPP offered). All zero offers -> all zero.
    """
    bad = {k: v for k, v in offers.items() if not (math.isfinite(v) and v >= 0)}
    if bad or not (math.isfinite(award_kw) and award_kw >= 0):
        raise SettlementError(f"cannot disaggregate award {award_kw!r} kW over offers {dict(offers)!r}; "
                              "the award and every offer must be finite and >= 0")
    total = sum(offers.values())
    if total <= 0:
        return {k: 0.0 for k in offers}
    served = min(award_kw, total)
    return {k: min(v, served * v / total) for k, v in offers.items()}


def share_revenue(revenue: float, contributions: Mapping[str, float], *,
                  fee_fraction: float) -> dict[str, float]:
    """Pass a slot's ancillary revenue back to the members, minus the VPP's fee.

    Rule: the VPP keeps ``fee_fraction * revenue``; member i gets ``revenue * (1 - fee_fraction) *
    c_i / sum c`` (contributions in kW, or kW-h). If nobody contributed, the members share equally.
    A negative revenue (penalties above payments) is shared by the same rule. The shares sum to
    ``revenue * (1 - fee_fraction)`` exactly up to float rounding (the rounding residue goes to the
    largest contributor).
    """
    bad = {k: v for k, v in contributions.items() if not (math.isfinite(v) and v >= 0)}
    if bad or not contributions or not 0 <= fee_fraction < 1 or not math.isfinite(revenue):
        raise SettlementError(f"cannot share revenue {revenue!r} $ with fee {fee_fraction!r} over "
                              f"contributions {dict(contributions)!r}; give a finite revenue, "
                              "0 <= fee_fraction < 1 and at least one contribution, all finite and >= 0")
    pot = revenue * (1.0 - fee_fraction)
    total = sum(contributions.values())
    if total > 0:
        shares = {k: pot * v / total for k, v in contributions.items()}
    else:
        shares = {k: pot / len(contributions) for k in contributions}
    largest = max(contributions, key=lambda k: contributions[k])
    shares[largest] += pot - math.fsum(shares.values())
    return shares


@dataclass(frozen=True)
class Guarantee:
    """Outcome of :func:`guarantee_transfers`: ``transfers`` ($, + = paid to the member by the VPP, - = paid by
    the member), ``uncovered`` ($): the part of the members' losses the community's gains could not cover."""

    transfers: dict[str, float]
    uncovered: float


GUARANTEE_DUST = 1e-9
"""$: differences from the reference smaller than this are float noise, not losses or gains."""


def guarantee_transfers(cost: Mapping[str, float], reference: Mapping[str, float]) -> Guarantee:
    """The VPP's "nobody worse off" settlement: top up every member whose cost exceeds its top-down cost,
    financed by the members who gained, pro rata to their gains.

    Rule: with ``d_i = cost_i - reference_i`` ($ paid over the run, + = member i lost against top-down),
    losses ``L_i = max(d_i, 0)``, gains ``G_i = max(-d_i, 0)``, ``L = sum L_i``, ``G = sum G_i`` and the
    covered amount ``C = min(L, G)``: member i receives ``L_i C / L`` and pays ``G_i C / G``. When the
    community gained at least what its losers lost (``G >= L``) every loser ends exactly at its reference and
    every gainer keeps ``G_i (1 - L / G) >= 0``; otherwise losers are topped up pro rata to their losses as far
    as the gains reach, gainers end at their reference and ``uncovered = L - G`` is reported. The transfers
    sum to zero up to float rounding (the residue goes to the largest gainer), so the VPP keeps nothing.
    """
    missing = sorted(set(cost) ^ set(reference))
    bad = {k: (cost.get(k), reference.get(k)) for k in set(cost) & set(reference)
           if not (math.isfinite(cost[k]) and math.isfinite(reference[k]))}
    if missing or bad:
        raise SettlementError(f"cannot settle the guarantee: members {missing} lack a cost or a reference and "
                              f"{dict(sorted(bad.items()))} are not finite; give both, finite, for every member")
    d = {k: cost[k] - reference[k] for k in sorted(cost)}
    losses = {k: v for k, v in d.items() if v > GUARANTEE_DUST}
    gains = {k: -v for k, v in d.items() if v < -GUARANTEE_DUST}
    lost, gained = math.fsum(losses.values()), math.fsum(gains.values())
    covered = min(lost, gained)
    if covered <= 0:
        return Guarantee({}, lost)
    out = {k: v * covered / lost for k, v in losses.items()}
    out.update({k: -v * covered / gained for k, v in gains.items()})
    largest = max(gains, key=lambda k: gains[k])
    out[largest] -= math.fsum(out.values())
    return Guarantee(out, lost - covered)
