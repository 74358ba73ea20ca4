"""Prosumers' stated preferences turned into the per-pair premia of the bilateral market (pure logic).

A preference is a premium ``w_bs >= 0`` per kWh that buyer ``b`` is willing to pay, above its limit price, for
energy from seller ``s`` (product differentiation in the sense of Sorin, Bobo & Pinson, IEEE Trans. Power
Syst. 34(2), 2019: the same kWh is a different product depending on who delivers it). A scenario states them
per feeder in ``feeders[i].prosumers.preferences`` (:class:`federates.common.config.PreferenceConfig`):

- class premia, held by a seeded share of the feeder's prosumers: ``pv_premium_per_kwh`` for a seller with PV
  (whatever it sells is counted as PV energy; its battery is not traced), ``near_premium_per_kwh`` for a seller
  whose electrical distance (base-case voltage drop from the substation, pu, the measure the network charge
  uses) differs from the buyer's by at most ``near_distance_pu``;
- named premia: ``named[buyer][seller]``, added to the buyer's class premia for that seller.

Each feeder clears its own Layer I market, so every counterparty already sits on the buyer's feeder: "the same
feeder" is no class of its own here. The premia are resolved once when the federation is built and registered
with the feeder's VPP (``VppFederate.trade_premium``), which passes those of the slot's orders to the clearing
(:meth:`federates.vpp.platform.CommunityVpp.clear_layer1`); they are standing preferences, not part of each
order, so they do not travel over HELICS every slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from federates.common.config import PreferenceConfig
from federates.common.errors import ConfigError

Premia = dict[str, dict[str, float]]  # buyer -> seller -> premium per kWh (only non-zero entries)


def preference_holders(prosumers: Sequence[str], share: float, *, seed: int, feeder: str) -> list[str]:
    """The ``round(share * n)`` prosumers (sorted) that hold the class premia: a draw seeded by the scenario
    seed and the feeder's name, independent of the order of ``prosumers``."""
    names = sorted(prosumers)
    count = round(share * len(names))
    if count == 0:
        return []
    rng = np.random.default_rng([seed, sum(map(ord, feeder)), 15])
    return sorted(names[i] for i in rng.choice(len(names), size=count, replace=False))


def _unknown_names(named: Mapping[str, Mapping[str, float]], known: set[str], feeder: str) -> list[str]:
    problems = []
    for buyer, row in named.items():
        for name in [buyer, *row]:
            if name not in known:
                problems.append(f"feeders.{feeder}.prosumers.preferences.named: {name!r} is not a prosumer of this "
                                f"feeder (its prosumers: {sorted(known)[:3]}...; see results/placement.csv)")
    return problems


def trade_premia(preferences: PreferenceConfig, prosumers: Sequence[str], *, has_pv: Mapping[str, bool],
                 distance: Mapping[str, float], seed: int, feeder: str) -> Premia:
    """Every buyer's premium per seller (sparse: zero premia are left out; an empty dict when nobody states
    one, which leaves the market exactly as without preferences).

    ``has_pv[name]``: the prosumer owns PV; ``distance[name]``: its electrical distance in pu (missing: 0).
    Raises :class:`ConfigError` naming every named prosumer that is not on this feeder.
    """
    known = set(prosumers)
    problems = _unknown_names(preferences.named, known, feeder)
    if problems:
        raise ConfigError(problems, source=f"feeder {feeder}")
    premia: Premia = {}
    pv, near = preferences.pv_premium_per_kwh, preferences.near_premium_per_kwh
    holders = preference_holders(prosumers, preferences.share, seed=seed, feeder=feeder) if pv or near else []
    for buyer in holders:
        d_b = distance.get(buyer, 0.0)
        for seller in prosumers:
            close = abs(distance.get(seller, 0.0) - d_b) <= preferences.near_distance_pu + 1e-12
            w = pv * has_pv.get(seller, False) + near * close
            if seller != buyer and w > 0:
                premia.setdefault(buyer, {})[seller] = w
    for buyer, row in preferences.named.items():
        for seller, w in row.items():
            if w > 0:
                mine = premia.setdefault(buyer, {})
                mine[seller] = mine.get(seller, 0.0) + w
    return premia


def pair_premia(premia: Mapping[str, Mapping[str, float]], buyers: set[str],
                sellers: set[str]) -> dict[tuple[str, str], float]:
    """The premia between this slot's buyers and sellers, keyed ``(buyer, seller)`` as the clearing wants."""
    return {(b, s): w for b in sorted(buyers & premia.keys()) for s, w in premia[b].items() if s in sellers}
