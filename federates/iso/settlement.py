"""Deployment signals and the settlement of ancillary awards, one 5-minute interval at a time.

Sign convention: power is positive when INJECTED INTO THE NETWORK. A regulation signal of +1 asks for the
full reg_up award as extra injection, -1 asks for the full reg_down award as extra withdrawal. Inside this
module every product's requirement and delivery are NON-NEGATIVE MAGNITUDES in that product's own
direction (reg_down 30 kW = 30 kW less injection than the baseline).

Settlement rules for one interval of ``period_s`` seconds, per product ``p`` awarded ``award_kw`` at the
uniform clearing price ``price`` ($/MW-h):

1. capacity payment   = award_kw / 1000 * price * period_s / 3600
2. performance score  = :func:`performance` of the deployment samples in the interval (1 if none asked)
3. performance-adjusted payment = capacity payment * score
4. shortfall_kw       = mean over the samples of max(0, required - delivered)
5. penalty            = :func:`penalty` = shortfall_kw / 1000 * price * multiplier * period_s / 3600
6. net                = performance-adjusted payment - penalty
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from federates.common.errors import ConfigError, SettlementError

PRODUCTS = ("reg_up", "reg_down", "spin")
KW_PER_MW = 1000.0
S_PER_H = 3600.0


def regulation_signal(seed: int, n_steps: int, *, persistence: float = 0.8,
                      volatility: float = 0.35) -> np.ndarray:
    """A seeded synthetic regulation signal in [-1, 1], one value per 5-minute step.

    AR(1) process ``x[k+1] = persistence * x[k] + volatility * N(0, 1)``, started at 0 and clipped to
    [-1, 1]. Positive asks for up regulation (more injection), negative for down regulation.
    """
    if n_steps < 0 or not 0 <= persistence < 1 or volatility < 0:
        raise ConfigError(f"n_steps={n_steps!r}, persistence={persistence!r}, volatility={volatility!r}; "
                          "give n_steps >= 0, 0 <= persistence < 1 and volatility >= 0")
    noise = np.random.default_rng(seed).normal(0.0, volatility, n_steps)
    signal = np.empty(n_steps)
    x = 0.0
    for k in range(n_steps):
        x = float(np.clip(persistence * x + noise[k], -1.0, 1.0))
        signal[k] = x
    return signal


def reserve_events(seed: int, n_steps: int, *, probability_per_step: float = 0.01,
                   duration_steps: int = 3) -> np.ndarray:
    """Seeded spinning-reserve deployments: a bool per 5-minute step, True while spin is deployed.

    An event starts at each step with ``probability_per_step`` (when none is running) and lasts
    ``duration_steps`` steps; during an event the full spin award is required.
    """
    if n_steps < 0 or not 0 <= probability_per_step <= 1 or duration_steps < 1:
        raise ConfigError(f"n_steps={n_steps!r}, probability_per_step={probability_per_step!r}, "
                          f"duration_steps={duration_steps!r}; give n_steps >= 0, a probability in [0, 1] "
                          "and duration_steps >= 1")
    starts = np.random.default_rng(seed).random(n_steps) < probability_per_step
    deployed = np.zeros(n_steps, dtype=bool)
    k = 0
    while k < n_steps:
        if starts[k]:
            deployed[k:k + duration_steps] = True
            k += duration_steps
        else:
            k += 1
    return deployed


def required_kw(awards_kw: Mapping[str, float], signal: float, spin_deployed: bool) -> dict[str, float]:
    """What the ISO asks of each awarded product for one step (non-negative magnitudes, kW).

    reg_up = award * max(signal, 0); reg_down = award * max(-signal, 0); spin = award if deployed else 0.
    """
    factor = {"reg_up": max(signal, 0.0), "reg_down": max(-signal, 0.0), "spin": float(spin_deployed)}
    return {p: float(a) * factor[p] for p, a in awards_kw.items()}


def performance(required_kw: float | np.ndarray, delivered_kw: float | np.ndarray) -> float:
    """Accuracy score in [0, 1]: ``1 - sum|delivered - required| / sum required``, clipped at 0.

    Both arguments are samples of non-negative magnitudes in the product's direction. Over-delivery counts
    as error as well (regulation must track, not exceed). If nothing was required the score is 1.
    """
    req = np.atleast_1d(np.asarray(required_kw, dtype=float))
    dlv = np.atleast_1d(np.asarray(delivered_kw, dtype=float))
    if req.shape != dlv.shape or np.any(req < 0) or not np.all(np.isfinite(req) & np.isfinite(dlv)):
        raise SettlementError(f"performance needs same-shape finite samples with required >= 0, got "
                              f"required {req.tolist()} and delivered {dlv.tolist()}; pass magnitudes "
                              "in the product's direction")
    total = float(req.sum())
    if total <= 0:
        return 1.0
    return float(max(0.0, 1.0 - np.abs(dlv - req).sum() / total))


def penalty(shortfall_kw: float, clearing_price_per_mw_h: float, period_s: float, multiplier: float) -> float:
    """Non-delivery penalty in $: ``shortfall_kw / 1000 * price * multiplier * period_s / 3600``.

    ``shortfall_kw`` is the mean undelivered power over the period (see module rules).
    """
    if not (is_nonneg(shortfall_kw) and is_nonneg(clearing_price_per_mw_h) and is_nonneg(period_s)
            and is_nonneg(multiplier)):
        raise SettlementError(f"penalty needs finite values >= 0, got shortfall {shortfall_kw!r} kW, "
                              f"price {clearing_price_per_mw_h!r} $/MW-h, period {period_s!r} s, "
                              f"multiplier {multiplier!r}")
    return shortfall_kw / KW_PER_MW * clearing_price_per_mw_h * multiplier * period_s / S_PER_H


@dataclass(frozen=True)
class IntervalSettlement:
    """One VPP's ancillary settlement for one interval, in $ (per product and totals)."""

    capacity_payment: dict[str, float]
    performance_score: dict[str, float]
    performance_payment: dict[str, float]
    shortfall_kw: dict[str, float]
    penalty: dict[str, float]

    @property
    def total_capacity_payment(self) -> float:
        return sum(self.capacity_payment.values())

    @property
    def total_performance_payment(self) -> float:
        return sum(self.performance_payment.values())

    @property
    def total_penalty(self) -> float:
        return sum(self.penalty.values())

    @property
    def net(self) -> float:
        """Performance-adjusted payment minus penalty, $."""
        return self.total_performance_payment - self.total_penalty


def settle_interval(awards_kw: Mapping[str, float], clearing_price_per_mw_h: Mapping[str, float],
                    required_kw: Mapping[str, float | np.ndarray],
                    delivered_kw: Mapping[str, float | np.ndarray], *,
                    period_s: float = 300.0, penalty_multiplier: float = 2.0) -> IntervalSettlement:
    """Settle a VPP's awards for one interval by the module rules 1-6.

    ``required_kw`` / ``delivered_kw`` give, per awarded product, the deployment samples of the interval
    (one value or an array; magnitudes in the product's direction). A product missing from them had no
    deployment (required 0, delivered 0).
    """
    unknown = [p for p in awards_kw if p not in PRODUCTS or p not in clearing_price_per_mw_h]
    if unknown:
        raise SettlementError(f"awards for {unknown} have no known product or clearing price; "
                              f"award only {PRODUCTS} and pass a price for each award")
    cap, score, perf, short, pen = {}, {}, {}, {}, {}
    for p, award in awards_kw.items():
        price = float(clearing_price_per_mw_h[p])
        req = np.atleast_1d(np.asarray(required_kw.get(p, 0.0), dtype=float))
        dlv = np.atleast_1d(np.asarray(delivered_kw.get(p, 0.0), dtype=float))
        cap[p] = float(award) / KW_PER_MW * price * period_s / S_PER_H
        score[p] = performance(req, dlv)
        perf[p] = cap[p] * score[p]
        short[p] = float(np.maximum(req - dlv, 0.0).mean())
        pen[p] = penalty(short[p], price, period_s, penalty_multiplier)
    return IntervalSettlement(cap, score, perf, short, pen)


def is_nonneg(v: float) -> bool:
    """A finite number >= 0 (anything else, including text and NaN, is not)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f >= 0
