"""The ISO's co-optimised ancillary-service market (regulation up/down, spinning reserve) for one slot.

Every seller - a conventional unit or a community VPP - sends a :class:`SupplyOffer`. The ISO solves one
linear programme on HiGHS that buys every product's requirement at least cost, sharing each seller's
capacity across products, and publishes one uniform clearing price per product: the dual of that product's
requirement constraint, i.e. the cost of one more kW of requirement (including the opportunity cost of
capacity moved away from another product). Unmet requirement is bought at the scarcity price, which then
sets the clearing price. When a requirement exactly uses up the capacity offered for it the price is not
unique (anything between the last accepted offer and the scarcity price is a valid dual); HiGHS then
returns one value of that range.

Units: prices in $/MW-h as ISOs publish them (``price_per_mw_h``), capacities in kW (``capacity_kw``).
1 $/MW-h on 100 kW for 15 min is 0.1 MW * 0.25 h * 1 $/MW-h = $0.025.

Capacity sharing: ``reg_up`` and ``spin`` both need headroom ABOVE the unit's operating point, so their
awards share ``capacity_kw``; ``reg_down`` needs room BELOW it, so it is limited by ``capacity_kw`` on its
own. There is no substitution between products (a kW of reg_up does not count as spin).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from federates.common.errors import ConfigError
from federates.common.solver import solve
from federates.iso.settlement import is_nonneg

PRODUCTS = ("reg_up", "reg_down", "spin")
UP_PRODUCTS = ("reg_up", "spin")
KW_PER_MW = 1000.0


@dataclass(frozen=True)
class SupplyOffer:
    """One seller's offer for one slot (a conventional unit or a VPP).

    ``capacity_kw`` is the seller's headroom shared by the up-direction products (reg_up + spin) and,
    separately, the limit on reg_down. ``price_per_mw_h`` lists the products offered and their prices;
    ``max_kw`` optionally caps each product (a product missing from it is capped by ``capacity_kw`` only).
    """

    name: str
    capacity_kw: float
    price_per_mw_h: Mapping[str, float]
    max_kw: Mapping[str, float]


@dataclass
class AncillaryClearing:
    """Result of :func:`clear_ancillary`.

    ``awards_kw[offer][product]`` lists every product the offer priced (0.0 if not awarded).
    ``cost`` is the as-offered cost of the awards plus the scarcity cost of the shortfall, in $/h
    (multiply by the slot length in hours for dollars).
    """

    clearing_price_per_mw_h: dict[str, float]
    awards_kw: dict[str, dict[str, float]]
    shortfall_kw: dict[str, float]
    cost: float


def clear_ancillary(offers: Sequence[SupplyOffer], requirement_kw: Mapping[str, float], *,
                    scarcity_price_per_mw_h: float = 1000.0) -> AncillaryClearing:
    """Clear the market: least-cost awards meeting ``requirement_kw``, uniform prices from the duals."""
    model = build_ancillary_model(offers, requirement_kw, scarcity_price_per_mw_h=scarcity_price_per_mw_h)
    solve(model, context="ISO ancillary clearing")
    return extract_ancillary(model)


def build_ancillary_model(offers: Sequence[SupplyOffer], requirement_kw: Mapping[str, float], *,
                          scarcity_price_per_mw_h: float = 1000.0) -> pyo.ConcreteModel:
    """Build the co-optimisation LP (inputs are validated and never mutated).

    The objective is in $/MW-h * kW (1000 x $/h) so that the requirement duals are directly in $/MW-h.
    """
    _validate(offers, requirement_kw, scarcity_price_per_mw_h)
    m = pyo.ConcreteModel(name="iso_ancillary")
    m.P = pyo.Set(initialize=[p for p in PRODUCTS if p in requirement_kw], ordered=True)
    m.O = pyo.Set(initialize=[o.name for o in offers], ordered=True)
    pairs = [(o.name, p) for o in offers for p in m.P if p in o.price_per_mw_h]
    m.OP = pyo.Set(initialize=pairs, dimen=2, ordered=True)
    by_name = {o.name: o for o in offers}
    m.requirement_kw = pyo.Param(m.P, initialize={p: float(requirement_kw[p]) for p in m.P})
    m.price = pyo.Param(m.OP, initialize={(o, p): float(by_name[o].price_per_mw_h[p]) for o, p in pairs})
    m.capacity_kw = pyo.Param(m.O, initialize={o.name: float(o.capacity_kw) for o in offers})
    m.scarcity_price = pyo.Param(initialize=float(scarcity_price_per_mw_h))

    def award_bounds(_m, o, p):
        offer = by_name[o]
        return 0.0, min(float(offer.max_kw.get(p, offer.capacity_kw)), float(offer.capacity_kw))

    m.award_kw = pyo.Var(m.OP, bounds=award_bounds)
    m.shortfall_kw = pyo.Var(m.P, within=pyo.NonNegativeReals)
    m.requirement = pyo.Constraint(m.P, rule=requirement_rule)
    m.up_capacity = pyo.Constraint(m.O, rule=up_capacity_rule)
    m.cost = pyo.Objective(rule=cost_rule, sense=pyo.minimize)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    return m


def requirement_rule(m, p):
    """sum_o award[o, p] + shortfall[p] >= requirement[p]   (dual = clearing price of p, $/MW-h)."""
    return sum(m.award_kw[o, q] for o, q in m.OP if q == p) + m.shortfall_kw[p] >= m.requirement_kw[p]


def up_capacity_rule(m, o):
    """sum_{p in (reg_up, spin)} award[o, p] <= capacity[o]   (reg_down is capped by its bound alone)."""
    terms = [m.award_kw[o, p] for q, p in m.OP if q == o and p in UP_PRODUCTS]
    if not terms:
        return pyo.Constraint.Skip
    return sum(terms) <= m.capacity_kw[o]


def cost_rule(m):
    """min sum_{o,p} price[o, p] * award[o, p] + scarcity_price * sum_p shortfall[p]."""
    return (sum(m.price[o, p] * m.award_kw[o, p] for o, p in m.OP)
            + m.scarcity_price * sum(m.shortfall_kw[p] for p in m.P))


def extract_ancillary(m: pyo.ConcreteModel) -> AncillaryClearing:
    """Read prices (duals of the kept requirement-constraint handles), awards and shortfall."""
    prices = {p: max(0.0, float(m.dual[m.requirement[p]])) for p in m.P}
    awards: dict[str, dict[str, float]] = {o: {} for o in m.O}
    for o, p in m.OP:
        awards[o][p] = max(0.0, float(pyo.value(m.award_kw[o, p])))
    shortfall = {p: max(0.0, float(pyo.value(m.shortfall_kw[p]))) for p in m.P}
    return AncillaryClearing(prices, awards, shortfall, float(pyo.value(m.cost)) / KW_PER_MW)


def _validate(offers: Sequence[SupplyOffer], requirement_kw: Mapping[str, float], scarcity: float) -> None:
    problems = [f"requirement for {p!r}: unknown product; use one of {PRODUCTS}"
                for p in requirement_kw if p not in PRODUCTS]
    problems += [f"requirement for {p!r} is {v!r} kW; give a finite value >= 0"
                 for p, v in requirement_kw.items() if not is_nonneg(v)]
    if not (math.isfinite(scarcity) and scarcity > 0):
        problems.append(f"scarcity price {scarcity!r} $/MW-h; give a finite value > 0")
    names = [o.name for o in offers]
    problems += [f"offer name {n!r} is used {names.count(n)} times; give every offer a unique name"
                 for n in sorted(set(names)) if names.count(n) > 1]
    for o in offers:
        problems += _offer_problems(o)
    if problems:
        raise ConfigError(problems, source="ancillary market")


def _offer_problems(o: SupplyOffer) -> list[str]:
    problems = []
    if not is_nonneg(o.capacity_kw):
        problems.append(f"offer {o.name!r}: capacity {o.capacity_kw!r} kW; give a finite value >= 0")
    for field, values in (("price_per_mw_h", o.price_per_mw_h), ("max_kw", o.max_kw)):
        problems += [f"offer {o.name!r}: {field} has unknown product {p!r}; use one of {PRODUCTS}"
                     for p in values if p not in PRODUCTS]
    problems += [f"offer {o.name!r}: price for {p!r} is {v!r}; give a finite number in $/MW-h"
                 for p, v in o.price_per_mw_h.items() if not math.isfinite(v)]
    problems += [f"offer {o.name!r}: max_kw for {p!r} is {v!r}; give a finite value >= 0"
                 for p, v in o.max_kw.items() if not is_nonneg(v)]
    return problems


# Ranges of the SPP day-ahead clearing prices of 2022-02-02/03 ($/MW-h), see shared/data.
SPP_PRICE_RANGE_PER_MW_H = {"reg_up": (8.0, 30.0), "reg_down": (2.0, 11.0), "spin": (0.0, 21.0)}


def synthetic_supply_stack(seed: int, requirement_kw: Mapping[str, float], *,
                           n_units: int = 50, margin: float = 2.0) -> list[SupplyOffer]:
    """A seeded stack of ``n_units`` conventional units able to cover ``margin`` x the requirement.

    Each unit offers every product with a positive requirement, at a price drawn uniformly from the SPP
    range of that product (:data:`SPP_PRICE_RANGE_PER_MW_H`). Product maxima are random shares of
    ``margin * requirement``; a unit's capacity is 75 % of its reg_up + spin maxima (so the up products
    compete for it) but at least its reg_down maximum. The stack's total capacity therefore covers
    ``0.75 * margin`` times the up-direction requirement.
    """
    if n_units < 1 or margin <= 0:
        raise ConfigError(f"n_units={n_units!r}, margin={margin!r}; give n_units >= 1 and margin > 0")
    rng = np.random.default_rng(seed)
    products = [p for p in PRODUCTS if requirement_kw.get(p, 0.0) > 0]
    max_kw = {}
    for p in products:
        share = rng.uniform(0.5, 1.5, n_units)
        max_kw[p] = margin * float(requirement_kw[p]) * share / share.sum()
    offers = []
    for i in range(n_units):
        unit_max = {p: round(float(max_kw[p][i]), 3) for p in products}
        up = sum(unit_max.get(p, 0.0) for p in UP_PRODUCTS)
        capacity = max(0.75 * up, unit_max.get("reg_down", 0.0))
        prices = {p: round(float(rng.uniform(*SPP_PRICE_RANGE_PER_MW_H[p])), 4) for p in products}
        offers.append(SupplyOffer(f"gen{i:03d}", round(capacity, 3), prices, unit_max))
    return offers
