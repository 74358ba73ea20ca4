"""Decentralised clearing of a bilateral energy market by consensus ADMM (pure numpy, no HELICS).

The market is the one cleared centrally by :func:`federates.vpp.p2p_market.build_bilateral_model`::

    max  sum_bs (v_b + w_bs - c_s - t_bs) x_bs
    s.t. sum_s x_bs <= E_b   (buyer b)        sum_b x_bs <= E_s   (seller s)        x_bs >= 0

Each buyer keeps its own copy ``x_bs`` of the energy it proposes to buy from seller ``s``; each seller keeps
its own copy ``z_bs`` of what it proposes to sell to ``b``; consensus ``x_bs = z_bs`` is enforced by scaled
ADMM (Boyd et al. 2011, section 7.1; Sorin, Bobo & Pinson 2019 for the P2P reading)::

    x^{k+1}_b = argmin_{x_b in X_b} -(v_b + w_b. - t_b.) . x_b + rho/2 ||x_b - z^k_b + u^k_b||^2  (buyer b)
    z^{k+1}_s = argmin_{z_s in Z_s}  c_s 1 . z_s + rho/2 ||x^{k+1}_s - z_s + u^k_s||^2       (seller s alone)
    u^{k+1}   = u^k + x^{k+1} - z^{k+1}                                                     (each pair)

with ``X_b = {x >= 0, sum x <= E_b}`` (a capped simplex) so each local step is a closed-form Euclidean
projection.  A buyer uses only its own value, energy, premia ``w_b.`` (its stated preferences per seller:
product differentiation) and pair charges plus the sellers' proposals ``z_b.`` and the pair prices; a seller
only its own cost and energy plus the buyers' proposals.  The pair price the seller receives is
``lambda_bs = rho * u_bs`` (the multiplier of ``x_bs - z_bs = 0``); the buyer pays ``lambda_bs + t_bs``
(at most ``v_b + w_bs``: its premium for a preferred seller is what it may pay above its limit there).

Agents are the rows (buyers) or columns (sellers) of dense ``(n_buy, n_sell)`` arrays; the local updates are
applied to all rows at once only as a vectorisation: row ``b`` of every update reads nothing but row ``b`` of
its inputs (``tests/unit/test_p2p_market.py`` checks that).  Inputs are expected in normalised units (prices
divided by the price band, energies by the largest order) so that ``rho`` ~ 1 is a good start; ``rho`` is
then adapted by residual balancing (Boyd et al. 2011, eq. 3.13).  The seller step and the multiplier update
use the over-relaxed ``x_hat = alpha x + (1 - alpha) z^k`` (section 3.4.3, ``alpha = 1.6``): each pair's
``x_hat`` needs only the buyer's new proposal and the seller's previous one, so the steps stay local.

Stopping (:class:`StoppingRule`): both the primal residual ``||x - z||`` and the dual residual
``rho ||z - z_prev||`` must fall below an absolute plus a relative tolerance (section 3.3.1).  An earlier
rule with an absolute tolerance only (``1e-5 sqrt(n)``) stopped up to 0.4 % short of the LP's volume and
0.2 % of its welfare on books of many small block orders (``tests/unit/test_admm.py``): the agreed trade is
``min(x, z)``, so the mismatch allowed over ``n`` pairs adds up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MU = 10.0  # residual balancing: adapt rho when one residual is this many times the other
_TAU = 2.0  # ... by this factor
_ADAPT_EVERY = 10  # iterations between adaptations (adapting every step makes the residuals oscillate)
_ADAPT_UNTIL = 2000  # then keep rho fixed, which guarantees convergence
_RELAX = 1.6  # over-relaxation alpha (Boyd et al. 2011, section 3.4.3; 1.5-1.8 is the usual range)


@dataclass(frozen=True)
class AdmmOutcome:
    """Result of :func:`solve_bilateral_admm` (normalised units, like its inputs)."""

    trades: np.ndarray          # (n_buy, n_sell) agreed energy min(x, z): feasible for buyers and sellers
    seller_price: np.ndarray    # (n_buy, n_sell) lambda_bs = rho * u_bs, what seller s receives from b
    iterations: int
    primal_residual: float      # ||x - z||_2 at the last iterate
    dual_residual: float        # rho * ||z - z_prev||_2 at the last iterate
    rho: float                  # final penalty after residual balancing
    converged: bool


def project_capped_simplex_rows(a: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Euclidean projection of every row ``a_i`` onto ``{y >= 0, sum(y) <= cap_i}`` (``cap_i > 0``).

    If ``sum(max(a_i, 0)) <= cap_i`` the projection is ``max(a_i, 0)``; otherwise it is
    ``max(a_i - theta_i, 0)`` with ``theta_i > 0`` chosen so the row sums to ``cap_i`` (Duchi et al. 2008).
    Rows are independent: row ``i`` of the result depends only on ``a_i`` and ``cap_i``.
    """
    out = np.maximum(a, 0.0)
    over = out.sum(axis=1) > cap
    if not over.any():
        return out
    rows, caps = a[over], cap[over]
    srt = -np.sort(-rows, axis=1)
    excess = np.cumsum(srt, axis=1) - caps[:, None]
    count = np.arange(1, rows.shape[1] + 1)
    support = srt - excess / count > 0.0
    last = rows.shape[1] - 1 - np.argmax(support[:, ::-1], axis=1)
    theta = excess[np.arange(rows.shape[0]), last] / (last + 1)
    out[over] = np.maximum(rows - theta[:, None], 0.0)
    return out


def buyer_update(value: np.ndarray, pair_cost: np.ndarray, mask: np.ndarray, e_max: np.ndarray,
                 z: np.ndarray, u: np.ndarray, rho: float, premium: np.ndarray | None = None) -> np.ndarray:
    """Each buyer's local step ``argmin -(v_b + w_b. - t_b.) x_b + rho/2 ||x_b - z_b + u_b||^2`` on its simplex.

    Completing the square gives the projection of ``z_b - u_b + (v_b + w_b. - t_b.)/rho``; pairs outside
    ``mask`` (not admissible) are held at zero; ``premium`` (``w``, per pair, the buyer's own preferences)
    defaults to zero.
    """
    gain = value[:, None] - pair_cost if premium is None else value[:, None] + premium - pair_cost
    target = np.where(mask, z - u + gain / rho, 0.0)
    return project_capped_simplex_rows(target, e_max)


def seller_update(cost: np.ndarray, mask: np.ndarray, e_max: np.ndarray, x: np.ndarray, u: np.ndarray,
                  rho: float) -> np.ndarray:
    """Each seller's local step: ``argmin c_s 1.z_s + rho/2 ||x_s - z_s + u_s||^2`` on its capped simplex.

    Sellers are the columns; the projection of ``x_s + u_s - c_s/rho`` is done on the transpose.
    """
    target = np.where(mask, x + u - cost[None, :] / rho, 0.0)
    return project_capped_simplex_rows(target.T, e_max).T


@dataclass(frozen=True)
class StoppingRule:
    """When :func:`solve_bilateral_admm` stops (Boyd et al. 2011, section 3.3.1, with ``A = I``, ``B = -I``).

    With ``n`` admissible pairs, primal residual ``r = x - z`` and dual residual ``s = rho (z - z_prev)``,
    ADMM stops at the first iteration where both::

        ||r||_2 <= eps_pri  = sqrt(n) * abs_tol + rel_tol * max(||x||_2, ||z||_2)
        ||s||_2 <= eps_dual = sqrt(n) * abs_tol + rel_tol * ||rho u||_2

    hold.  Both tolerances are in normalised units (energies / largest order, prices / price band), so
    ``abs_tol`` is a per-pair root-mean-square mismatch in units of the largest order.  Boyd suggests
    ``rel_tol`` of 1e-3 or 1e-4 for "modest accuracy"; a market needs more, because every unit of ``r``
    is energy one side offered and the other did not take (the agreed trade is ``min(x, z)``), so the
    defaults are tight enough for 0.05 % welfare and 0.1 % volume of the LP on the 14-agent pool case of
    ``tests/unit/test_admm.py``.  ``min_iter`` guards against stopping in the first iterations, when
    ``x = z = 0`` satisfies both tests trivially on books with tiny surpluses.
    """

    abs_tol: float = 1e-6
    rel_tol: float = 1e-5
    min_iter: int = 10

    def thresholds(self, n_pairs: int, x: np.ndarray, z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """``(eps_pri, eps_dual)`` for the current iterate; ``y = rho * u`` are the scaled-back multipliers."""
        root_n = np.sqrt(max(n_pairs, 1))
        eps_pri = root_n * self.abs_tol + self.rel_tol * max(_norm(x), _norm(z))
        eps_dual = root_n * self.abs_tol + self.rel_tol * _norm(y)
        return eps_pri, eps_dual


def _norm(a: np.ndarray) -> float:
    """Euclidean norm of all entries (``einsum`` rather than ``np.linalg.norm``: it does not call the threaded
    BLAS, which is fifty times slower on a shared two-core machine)."""
    return float(np.sqrt(np.einsum("ij,ij->", a, a)))


def solve_bilateral_admm(value: np.ndarray, cost: np.ndarray, pair_cost: np.ndarray, mask: np.ndarray,
                         buy_e: np.ndarray, sell_e: np.ndarray, *, rho: float, stop: StoppingRule,
                         max_iter: int, premium: np.ndarray | None = None) -> AdmmOutcome:
    """Run consensus ADMM until ``stop`` is met (see :class:`StoppingRule`) or ``max_iter`` iterations.

    ``value``/``buy_e`` are per buyer, ``cost``/``sell_e`` per seller, ``pair_cost``/``mask``/``premium``
    (buyers' premia per seller, default none) per pair.
    ``rho`` is adapted by residual balancing on the residuals relative to their thresholds (every
    ``_ADAPT_EVERY`` iterations up to ``_ADAPT_UNTIL``, then fixed).  Stops after ``max_iter`` iterations
    with ``converged=False`` if the rule was not met; the returned ``trades`` are feasible either way.
    """
    x = np.zeros(mask.shape)
    z = np.zeros(mask.shape)
    u = np.zeros(mask.shape)
    n_pairs = int(mask.sum())
    r_norm = s_norm = float("inf")
    converged = False
    iteration = 0
    while iteration < max_iter:
        iteration += 1
        x = buyer_update(value, pair_cost, mask, buy_e, z, u, rho, premium)
        z_prev = z
        x_hat = _RELAX * x + (1.0 - _RELAX) * z_prev
        z = seller_update(cost, mask, sell_e, x_hat, u, rho)
        u = u + x_hat - z
        r_norm = _norm(x - z)
        s_norm = rho * _norm(z - z_prev)
        eps_pri, eps_dual = stop.thresholds(n_pairs, x, z, rho * u)
        converged = r_norm <= eps_pri and s_norm <= eps_dual
        if converged and iteration >= stop.min_iter:
            break
        if iteration % _ADAPT_EVERY or iteration > _ADAPT_UNTIL:
            continue
        rho, u = _balance(rho, u, r_norm / eps_pri, s_norm / eps_dual)
    return AdmmOutcome(trades=np.minimum(x, z), seller_price=rho * u, iterations=iteration,
                       primal_residual=r_norm, dual_residual=s_norm, rho=rho, converged=converged)


def _balance(rho: float, u: np.ndarray, r_rel: float, s_rel: float) -> tuple[float, np.ndarray]:
    """Residual balancing (Boyd et al. 2011, eq. 3.13) on residuals relative to their thresholds: raise
    ``rho`` when the primal residual lags by more than ``_MU``, lower it when the dual one does; the scaled
    multiplier ``u = y / rho`` is rescaled so the prices ``y`` are unchanged."""
    if r_rel > _MU * s_rel:
        return rho * _TAU, u / _TAU
    if s_rel > _MU * r_rel:
        return rho / _TAU, u * _TAU
    return rho, u
