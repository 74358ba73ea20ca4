"""Decentralised clearing of a bilateral energy market by consensus ADMM (pure numpy, no HELICS).

The market is the one cleared centrally by :func:`federates.vpp.p2p_market.build_bilateral_model`::

    max  sum_bs (v_b - c_s - t_bs) x_bs
    s.t. sum_s x_bs <= E_b   (buyer b)        sum_b x_bs <= E_s   (seller s)        x_bs >= 0

Each buyer keeps its own copy ``x_bs`` of the energy it proposes to buy from seller ``s``; each seller keeps
its own copy ``z_bs`` of what it proposes to sell to ``b``; consensus ``x_bs = z_bs`` is enforced by scaled
ADMM (Boyd et al. 2011, section 7.1; Sorin, Bobo & Pinson 2019 for the P2P reading)::

    x^{k+1}_b = argmin_{x_b in X_b} -(v_b - t_b.) . x_b + rho/2 ||x_b - z^k_b + u^k_b||^2   (buyer b alone)
    z^{k+1}_s = argmin_{z_s in Z_s}  c_s 1 . z_s + rho/2 ||x^{k+1}_s - z_s + u^k_s||^2       (seller s alone)
    u^{k+1}   = u^k + x^{k+1} - z^{k+1}                                                     (each pair)

with ``X_b = {x >= 0, sum x <= E_b}`` (a capped simplex) so each local step is a closed-form Euclidean
projection.  A buyer uses only its own value, energy and pair charges plus the sellers' proposals ``z_b.``
and the pair prices; a seller only its own cost and energy plus the buyers' proposals.  The pair price the
seller receives is ``lambda_bs = rho * u_bs`` (the multiplier of ``x_bs - z_bs = 0``); the buyer pays
``lambda_bs + t_bs``.

Agents are the rows (buyers) or columns (sellers) of dense ``(n_buy, n_sell)`` arrays; the local updates are
applied to all rows at once only as a vectorisation: row ``b`` of every update reads nothing but row ``b`` of
its inputs (``tests/unit/test_p2p_market.py`` checks that).  Inputs are expected in normalised units (prices
divided by the price band, energies by the largest order) so that ``rho`` ~ 1 is a good start; ``rho`` is
then adapted by residual balancing (Boyd et al. 2011, eq. 3.13).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MU = 10.0  # residual balancing: adapt rho when one residual is this many times the other
_TAU = 2.0  # ... by this factor
_ADAPT_EVERY = 10  # iterations between adaptations (adapting every step makes the residuals oscillate)
_ADAPT_UNTIL = 2000  # then keep rho fixed, which guarantees convergence


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
                 z: np.ndarray, u: np.ndarray, rho: float) -> np.ndarray:
    """Each buyer's local step ``argmin -(v_b - t_b.) x_b + rho/2 ||x_b - z_b + u_b||^2`` on its simplex.

    Completing the square gives the projection of ``z_b - u_b + (v_b - t_b.)/rho``; pairs outside ``mask``
    (not admissible) are held at zero.
    """
    target = np.where(mask, z - u + (value[:, None] - pair_cost) / rho, 0.0)
    return project_capped_simplex_rows(target, e_max)


def seller_update(cost: np.ndarray, mask: np.ndarray, e_max: np.ndarray, x: np.ndarray, u: np.ndarray,
                  rho: float) -> np.ndarray:
    """Each seller's local step: ``argmin c_s 1.z_s + rho/2 ||x_s - z_s + u_s||^2`` on its capped simplex.

    Sellers are the columns; the projection of ``x_s + u_s - c_s/rho`` is done on the transpose.
    """
    target = np.where(mask, x + u - cost[None, :] / rho, 0.0)
    return project_capped_simplex_rows(target.T, e_max).T


def solve_bilateral_admm(value: np.ndarray, cost: np.ndarray, pair_cost: np.ndarray, mask: np.ndarray,
                         buy_e: np.ndarray, sell_e: np.ndarray, *, rho: float, tol: float,
                         max_iter: int) -> AdmmOutcome:
    """Run consensus ADMM until both residuals are below ``tol * sqrt(number of admissible pairs)``.

    ``value``/``buy_e`` are per buyer, ``cost``/``sell_e`` per seller, ``pair_cost``/``mask`` per pair.
    Stops after ``max_iter`` iterations with ``converged=False`` if the tolerance was not met; the returned
    ``trades`` are feasible either way.
    """
    x = np.zeros(mask.shape)
    z = np.zeros(mask.shape)
    u = np.zeros(mask.shape)
    threshold = tol * np.sqrt(max(int(mask.sum()), 1))
    r_norm = s_norm = float("inf")
    iteration = 0
    while iteration < max_iter:
        iteration += 1
        x = buyer_update(value, pair_cost, mask, buy_e, z, u, rho)
        z_prev = z
        z = seller_update(cost, mask, sell_e, x, u, rho)
        u = u + x - z
        r_norm = float(np.linalg.norm(x - z))
        s_norm = float(rho * np.linalg.norm(z - z_prev))
        if r_norm <= threshold and s_norm <= threshold:
            break
        if iteration % _ADAPT_EVERY or iteration > _ADAPT_UNTIL:
            continue
        if r_norm > _MU * s_norm:
            rho, u = rho * _TAU, u / _TAU
        elif s_norm > _MU * r_norm:
            rho, u = rho / _TAU, u * _TAU
    converged = r_norm <= threshold and s_norm <= threshold
    return AdmmOutcome(trades=np.minimum(x, z), seller_price=rho * u, iterations=iteration,
                       primal_residual=r_norm, dual_residual=s_norm, rho=rho, converged=converged)
