"""Peer-to-peer market clearing: gate screening and five clearing mechanisms (pure logic, no HELICS).

Used for Layer I (prosumers on one feeder; price bounds = [buy-back rate, retail rate]) and reused for
Layer III (VPPs trading 5-minute shortfalls/surpluses; price bounds = [real-time energy value, penalty]),
so nothing here knows which layer it serves: the bounds are just ``price_floor_per_kwh`` and
``price_cap_per_kwh``.

Market energies (``energy_kwh``) are non-negative with an explicit side ("buy"/"sell"); they are not powers
and carry no sign (the project sign convention -- net power positive when injected into the distribution
network -- applies to the physical layer that produced the order, not here).

Mechanisms (``MECHANISMS``):

``auction``
    Uniform-price double auction with divisible orders and the k-double-auction price rule.  Bids are sorted
    by price descending, asks ascending (ties: earlier ``arrival``, then ``order_id``) and energy is paired
    off while the current bid price >= the current ask price.  The market-clearing prices form the interval
    ``[a, b]`` with ``b = min(last accepted bid, first ask left with energy)`` and
    ``a = max(last accepted ask, first bid left with energy)`` (a partially filled order counts as "left with
    energy"; a missing neighbour is ignored).  The price is ``k*b + (1-k)*a``.  With ``k = 0.5`` and one
    crossing this is the midpoint of the last accepted bid and ask.
``pay_as_bid``
    Continuous double auction: orders arrive in priority order (see :func:`arrival_sequence`: submission
    time, which the gate writes into ``arrival``, then a draw seeded by ``seed`` and the ``order_id``, so
    neither the order in which the platform read its members' messages nor the order of the list matters);
    an incoming order matches resting orders best price first (then earliest resting first) at the RESTING
    order's price; any remainder rests.  Not efficient in general: an early order may trade with a poor
    counterpart; :func:`welfare_ratio` measures the loss against the LP (``benchmarks/p2p_clearing.py``).
``bilateral``
    Bilateral contract network with product differentiation, cleared centrally as a Pyomo LP on HiGHS
    (see :func:`build_bilateral_model`).  Pair prices come from the duals of the balance constraints.
    Two per-pair terms differentiate the product (Sorin, Bobo & Pinson, IEEE Trans. Power Syst. 34(2), 2019):
    a network charge ``t_bs`` (``trade_cost_per_kwh``, set by the operator, paid to it) and a buyer's
    preference premium ``w_bs >= 0`` (``premium_per_kwh``, stated by the buyer: it values energy from seller
    ``s`` ``w_bs`` per kWh above its limit price, e.g. for PV energy or a named neighbour).  A premium is no
    money flow of its own: it raises what the buyer is willing to pay on that pair only.
``bilateral_admm``
    The same market cleared decentrally by consensus ADMM (:mod:`federates.vpp.admm`); each buyer's premia
    enter only its own local step.
``sdr``
    Supply-demand-ratio pricing of Liu et al. (IEEE Trans. Power Syst. 32(5), 2017), see :func:`sdr_prices`.
    SCOPE: SDR is an internal pricing rule for a community whose members accept any price between buy-back
    and retail, i.e. whose limits sit at the band's edges (sellers at the floor, buyers at the cap) and
    whose only alternative is the utility.  Its single price is set by the ratio of the volumes, not by the
    limits, so on a book where members price their energy inside the band (as the HEMS limit-price rule
    does) it excludes every order the price violates, and with a ratio near 1 its price falls to the floor
    and excludes every seller asking more: it can trade nothing where trade is efficient
    (``tests/unit/test_p2p_market.py``).  Use ``auction`` (or ``bilateral``) for priced books.

Every mechanism guarantees: energy bought = energy sold (the trades are the only record); buyer payments =
seller receipts + fees; no buyer pays above its limit and no seller receives below its limit; every price
(paid and received) lies in ``[floor, cap]``; no trade between a bid below an ask; matched energy <= order
energy.  With premia the buyer's limit and bid on a pair are its order's limit plus its premium for that
seller (the other mechanisms ignore premia and trade costs).  ``auction``, ``pay_as_bid`` and ``sdr`` may pair
a participant's own buy and sell order (a wash: it pays itself; ``screen_orders`` allows one order per side);
the bilateral mechanisms never do.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from federates.common.errors import ConfigError, SettlementError
from federates.common.imports import pyomo_environ as pyo
from federates.common.solver import solve
from federates.vpp.admm import StoppingRule, solve_bilateral_admm

logger = logging.getLogger(__name__)

MECHANISMS = ("auction", "pay_as_bid", "bilateral", "bilateral_admm", "sdr")
SIDES = ("buy", "sell")
EPS_KWH = 1e-9  # energy below this is treated as zero (float dust from pairing off)

TradeCosts = Mapping[tuple[str, str], float]
TradePremia = Mapping[tuple[str, str], float]  # (buyer, seller) -> premium per kWh the buyer adds, >= 0


@dataclass(frozen=True)
class Order:
    """One limit order of a participant for one market slot (energy > 0, side "buy" or "sell")."""

    order_id: str
    participant: str
    side: str                 # "buy" or "sell"
    energy_kwh: float         # > 0
    limit_price_per_kwh: float
    arrival: int = 0          # time priority: rank of the submission time, written by screen_orders()


@dataclass(frozen=True)
class Submission:
    """An order as it arrived at the gate."""

    order: Order
    sender: str               # the federate that sent it
    submitted_s: float        # simulation time it was submitted


@dataclass(frozen=True)
class Rejection:
    """An order refused at the gate, with a human-readable reason starting with its category."""

    order: Order
    reason: str


@dataclass(frozen=True)
class Trade:
    """Energy delivered from ``seller`` to ``buyer``; the buyer pays ``price_per_kwh``.

    The seller receives ``price_per_kwh - fee_per_kwh``; the fee goes to the network operator (bilateral
    trade cost, negative for a subsidised preference).  ``buy_order_id``/``sell_order_id`` name the orders.
    ``premium_per_kwh`` is the buyer's stated premium for this seller (bilateral mechanisms): the buyer's
    limit on this trade is its order's limit plus the premium.  It is no payment of its own.
    """

    buyer: str
    seller: str
    energy_kwh: float
    price_per_kwh: float
    fee_per_kwh: float = 0.0
    buy_order_id: str = ""
    sell_order_id: str = ""
    premium_per_kwh: float = 0.0

    @property
    def seller_price_per_kwh(self) -> float:
        """What the seller receives per kWh."""
        return self.price_per_kwh - self.fee_per_kwh


_Cleared = tuple[list[Trade], float | None, dict[str, float]]  # trades, uniform price, extra diagnostics


@dataclass
class ClearingResult:
    """Outcome of :func:`clear`: the trades plus per-order matched energy and diagnostics."""

    mechanism: str
    trades: list[Trade]
    matched_kwh: dict[str, float]        # order_id -> energy matched (0 if none)
    clearing_price_per_kwh: float | None  # uniform price where the mechanism has one, else None
    diagnostics: dict[str, float]        # welfare, volume_kwh, n_trades, time_s, and per mechanism extras


# ----------------------------------------------------------------------------------------------- gate


def _gate_problem(sub: Submission, gate_s: float, hosts: Mapping[str, str], floor: float,
                  cap: float) -> str | None:
    """The first gate rule ``sub`` breaks (late, identity, side, energy, price), or None."""
    order = sub.order
    if not sub.submitted_s <= gate_s:
        return f"late: submitted at {sub.submitted_s:g} s after gate {gate_s:g} s"
    host = hosts.get(order.participant)
    if host is None:
        return (f"identity: participant {order.participant!r} is not hosted by any federate "
                f"(sent by {sub.sender!r}); add it to the hosts map")
    if host != sub.sender:
        return (f"identity: participant {order.participant!r} is hosted by {host!r}, "
                f"not by sender {sub.sender!r}")
    if order.side not in SIDES:
        return f"side: {order.side!r} is not one of {SIDES}"
    if not (math.isfinite(order.energy_kwh) and order.energy_kwh > 0):
        return f"energy: {order.energy_kwh!r} kWh must be a positive number"
    price = order.limit_price_per_kwh
    if not (math.isfinite(price) and floor <= price <= cap):
        return f"price: limit {price!r} per kWh is outside [{floor:g}, {cap:g}]"
    return None


def screen_orders(
    submissions: Sequence[Submission], *, gate_s: float, hosts: Mapping[str, str], price_floor_per_kwh: float,
    price_cap_per_kwh: float,
) -> tuple[list[Order], list[Rejection]]:
    """Gate checks; return (accepted orders, rejections), each in submission order.

    Submissions are taken in order of ``submitted_s`` (ties keep their sequence order).  Each accepted order
    leaves the gate with ``arrival`` = the rank of its submission time among the distinct submission times at
    this gate (orders submitted at the same time share a rank), replacing whatever the sender or the platform
    wrote there: time priority comes from the submission time only, never from the order in which the
    platform read its inbox.  Rejected are: late ones (``submitted_s > gate_s``), identity failures
    (``hosts[participant] != sender``), an unknown side, non-positive energy, limit prices outside
    ``[floor, cap]``, and duplicates: an ``order_id`` already accepted, or a second order of the same
    participant and side.  Of duplicates the first VALID one is kept.
    """
    _check_bounds(price_floor_per_kwh, price_cap_per_kwh, source="screen_orders")
    accepted: list[Order] = []
    rejected: list[Rejection] = []
    by_id: dict[str, Order] = {}
    by_side: dict[tuple[str, str], Order] = {}
    rank = {t: n for n, t in enumerate(sorted({s.submitted_s for s in submissions}))}
    for sub in sorted(submissions, key=lambda s: s.submitted_s):
        order = sub.order
        reason = _gate_problem(sub, gate_s, hosts, price_floor_per_kwh, price_cap_per_kwh)
        if reason is None and order.order_id in by_id:
            reason = (f"duplicate order_id {order.order_id!r}: already accepted for participant "
                      f"{by_id[order.order_id].participant!r}")
        if reason is None and (order.participant, order.side) in by_side:
            first = by_side[(order.participant, order.side)]
            reason = (f"duplicate: participant {order.participant!r} already has {order.side} order "
                      f"{first.order_id!r} at this gate")
        if reason is None:
            order = replace(order, arrival=rank[sub.submitted_s])
            accepted.append(order)
            by_id[order.order_id] = order
            by_side[(order.participant, order.side)] = order
        else:
            rejected.append(Rejection(order=order, reason=reason))
    return accepted, rejected


# ------------------------------------------------------------------------------------------ validation


def _check_bounds(floor: float, cap: float, *, source: str) -> None:
    if not (math.isfinite(floor) and math.isfinite(cap) and floor <= cap):
        raise ConfigError(f"price bounds [{floor!r}, {cap!r}] per kWh must be finite with floor <= cap",
                          source=source)


def _order_problems(orders: Sequence[Order], floor: float, cap: float) -> list[str]:
    problems = []
    seen: set[str] = set()
    for o in orders:
        if o.order_id in seen:
            problems.append(f"order_id {o.order_id!r} appears twice; screen the book with screen_orders()")
        seen.add(o.order_id)
        if o.side not in SIDES:
            problems.append(f"order {o.order_id!r}: side {o.side!r} is not one of {SIDES}")
        if not (math.isfinite(o.energy_kwh) and o.energy_kwh > 0):
            problems.append(f"order {o.order_id!r}: energy {o.energy_kwh!r} kWh must be positive")
        if not (math.isfinite(o.limit_price_per_kwh) and floor <= o.limit_price_per_kwh <= cap):
            problems.append(f"order {o.order_id!r}: limit price {o.limit_price_per_kwh!r} per kWh is outside "
                            f"[{floor:g}, {cap:g}]")
    return problems


def _parameter_problems(mechanism: str, floor: float, cap: float, k: float, trade_costs: TradeCosts,
                        admm: tuple[float, StoppingRule, int]) -> list[str]:
    problems = []
    if mechanism not in MECHANISMS:
        problems.append(f"mechanism {mechanism!r} is unknown; use one of {MECHANISMS}")
    if not 0.0 <= k <= 1.0:
        problems.append(f"k = {k!r} must be in [0, 1] (share of the price interval given to the buyer side)")
    if mechanism == "sdr" and not floor > 0.0:
        problems.append(f"sdr pricing needs a positive price floor (buy-back rate), got {floor!r}; "
                        "use 'auction' when the floor can be zero or negative")
    for pair, fee in trade_costs.items():
        if not (math.isfinite(fee) and fee >= floor - cap):
            problems.append(f"trade cost {fee!r} per kWh for pair {pair!r} must be finite and >= floor - cap "
                            f"= {floor - cap:g} (a premium cannot exceed the price band)")
    rho, stop, max_iter = admm
    if not (rho > 0 and stop.abs_tol > 0 and stop.rel_tol >= 0 and max_iter >= 1):
        problems.append(f"admm_rho = {rho!r}, admm_tol = {stop.abs_tol!r} and admm_max_iter = {max_iter!r} must "
                        f"be positive and admm_rel_tol = {stop.rel_tol!r} not negative")
    return problems


def _premium_problems(premia: TradePremia, floor: float, cap: float) -> list[str]:
    return [f"premium {w!r} per kWh for pair {pair!r} must be finite and in [0, cap - floor] = [0, {cap - floor:g}] "
            "(a buyer's extra willingness to pay for that seller's energy)"
            for pair, w in premia.items() if not (math.isfinite(w) and 0.0 <= w <= cap - floor)]


# ------------------------------------------------------------------------------------------ public entry


def clear(orders: Sequence[Order], mechanism: str, *, price_floor_per_kwh: float, price_cap_per_kwh: float,
          k: float = 0.5, trade_cost_per_kwh: TradeCosts | None = None, seed: int = 0,
          admm_rho: float = 1.0, admm_tol: float = 1e-6, admm_rel_tol: float = 1e-5,
          admm_max_iter: int = 20000, premium_per_kwh: TradePremia | None = None) -> ClearingResult:
    """Clear one slot's order book with ``mechanism`` (one of :data:`MECHANISMS`).

    ``k`` is used by ``auction``, ``seed`` by ``pay_as_bid``, ``trade_cost_per_kwh`` and ``premium_per_kwh``
    (keyed by ``(buyer participant, seller participant)``, missing pairs 0) by the bilateral mechanisms, the
    ``admm_*`` settings by ``bilateral_admm`` (``admm_rho`` in normalised units: price band / largest order;
    ``admm_tol`` and ``admm_rel_tol`` are the absolute and relative tolerances of the primal/dual residual
    stopping rule, :class:`federates.vpp.admm.StoppingRule`).  Other mechanisms ignore them.
    Raises :class:`ConfigError` listing every problem with the book or the settings.
    """
    _check_bounds(price_floor_per_kwh, price_cap_per_kwh, source="p2p clear")
    costs = dict(trade_cost_per_kwh or {})
    premia = dict(premium_per_kwh or {}) if mechanism in ("bilateral", "bilateral_admm") else {}
    problems = _order_problems(orders, price_floor_per_kwh, price_cap_per_kwh)
    stop = StoppingRule(abs_tol=admm_tol, rel_tol=admm_rel_tol)
    problems += _parameter_problems(mechanism, price_floor_per_kwh, price_cap_per_kwh, k, costs,
                                    (admm_rho, stop, admm_max_iter))
    problems += _premium_problems(premia, price_floor_per_kwh, price_cap_per_kwh)
    if problems:
        raise ConfigError(problems, source=f"p2p clear ({mechanism})")
    market = _Market(tuple(orders), price_floor_per_kwh, price_cap_per_kwh)
    clearers: dict[str, Callable[[], _Cleared]] = {
        "auction": lambda: _clear_auction(market, k),
        "pay_as_bid": lambda: _clear_pay_as_bid(market, seed),
        "bilateral": lambda: _clear_bilateral(market, costs, premia),
        "bilateral_admm": lambda: _clear_bilateral_admm(market, costs, premia, admm_rho, stop, admm_max_iter),
        "sdr": lambda: _clear_sdr(market),
    }
    start = time.perf_counter()
    trades, price, extra = clearers[mechanism]()
    elapsed = time.perf_counter() - start
    result = _result(market, mechanism, trades, price, extra, elapsed)
    verify_clearing(result, orders, price_floor_per_kwh=price_floor_per_kwh,
                    price_cap_per_kwh=price_cap_per_kwh, premium_per_kwh=premia)
    return result


def welfare_ratio(result: ClearingResult, orders: Sequence[Order], *, price_floor_per_kwh: float,
                  price_cap_per_kwh: float, trade_cost_per_kwh: TradeCosts | None = None,
                  premium_per_kwh: TradePremia | None = None) -> float:
    """Welfare of ``result`` over the most the same book can give: the ``bilateral`` LP's welfare with the same
    trade costs and premia (1.0 = efficient; 1.0 also when the LP finds no gain from trade).

    Welfare is ``sum (bid + premium - ask - fee) * energy`` over the trades, with the premia of
    ``premium_per_kwh`` also on the trades of a mechanism that ignored them (an auction trade that happens to
    join a buyer to a preferred seller gives that buyer its premium's worth too).  The LP never pairs a
    participant with itself, so a mechanism that does (a wash between a participant's own crossing orders) can
    exceed 1.
    """
    best = clear(orders, "bilateral", price_floor_per_kwh=price_floor_per_kwh, price_cap_per_kwh=price_cap_per_kwh,
                 trade_cost_per_kwh=trade_cost_per_kwh, premium_per_kwh=premium_per_kwh).diagnostics["welfare"]
    premia = premium_per_kwh or {}
    unpriced = sum((premia.get((t.buyer, t.seller), 0.0) - t.premium_per_kwh) * t.energy_kwh for t in result.trades)
    return (result.diagnostics["welfare"] + unpriced) / best if best > 0.0 else 1.0


def _trade_problems(trade: Trade, by_id: Mapping[str, Order], floor: float, cap: float, tol: float,
                    premia: TradePremia) -> list[str]:
    buy, sell = by_id.get(trade.buy_order_id), by_id.get(trade.sell_order_id)
    if buy is None or sell is None or buy.side != "buy" or sell.side != "sell":
        return [f"{trade}: does not join a known buy order to a known sell order"]
    problems = []
    received = trade.seller_price_per_kwh
    premium = premia.get((buy.participant, sell.participant), 0.0)
    bid = buy.limit_price_per_kwh + premium  # the buyer's limit on this pair
    if (trade.buyer, trade.seller) != (buy.participant, sell.participant) or not trade.energy_kwh > 0:
        problems.append(f"{trade}: participants or energy do not match its orders")
    if abs(trade.premium_per_kwh - premium) > tol:
        problems.append(f"{trade}: premium differs from the buyer's stated premium {premium} for this seller")
    with_premium = f" + premium {premium}" if premium else ""
    if trade.price_per_kwh > bid + tol:
        problems.append(f"{trade}: buyer pays above its limit {buy.limit_price_per_kwh}{with_premium}")
    if received < sell.limit_price_per_kwh - tol:
        problems.append(f"{trade}: seller receives {received} below its limit {sell.limit_price_per_kwh}")
    if not all(floor - tol <= p <= cap + tol for p in (trade.price_per_kwh, received)):
        problems.append(f"{trade}: a price is outside [{floor}, {cap}]")
    if bid < sell.limit_price_per_kwh:
        problems.append(f"{trade}: bid {buy.limit_price_per_kwh}{with_premium} is below ask {sell.limit_price_per_kwh}")
    return problems


def verify_clearing(result: ClearingResult, orders: Sequence[Order], *, price_floor_per_kwh: float,
                    price_cap_per_kwh: float, tol_kwh: float = 1e-6, tol_price: float = 1e-9,
                    premium_per_kwh: TradePremia | None = None) -> None:
    """Check a clearing result against its book; raise :class:`SettlementError` listing every violation.

    Checked: each trade joins a buy order to a sell order of the named participants with positive energy;
    buyer pays <= its limit plus its premium for that seller (``premium_per_kwh``, keyed by (buyer, seller),
    missing pairs 0, and recorded on the trade), seller receives >= its limit, both prices in ``[floor, cap]``,
    bid (+ premium) >= ask; ``matched_kwh`` equals the trades' energy per order and is <= the order's energy;
    energy bought equals energy sold.  (Buyer payments = seller receipts + fees holds per trade by the
    definition of the fee.)
    """
    by_id = {o.order_id: o for o in orders}
    premia = premium_per_kwh or {}
    problems = []
    from_trades = dict.fromkeys(by_id, 0.0)
    for trade in result.trades:
        problems += _trade_problems(trade, by_id, price_floor_per_kwh, price_cap_per_kwh, tol_price, premia)
        for order_id in (trade.buy_order_id, trade.sell_order_id):
            if order_id in from_trades:
                from_trades[order_id] += trade.energy_kwh
    for order_id, order in by_id.items():
        matched = result.matched_kwh.get(order_id, -1.0)
        if abs(matched - from_trades[order_id]) > tol_kwh or matched > order.energy_kwh + tol_kwh:
            problems.append(f"order {order_id!r}: matched {matched} kWh, trades {from_trades[order_id]} kWh, "
                            f"order {order.energy_kwh} kWh")
    bought = sum(e for i, e in from_trades.items() if by_id[i].side == "buy")
    sold = sum(e for i, e in from_trades.items() if by_id[i].side == "sell")
    if abs(bought - sold) > tol_kwh:
        problems.append(f"energy bought {bought} kWh != energy sold {sold} kWh")
    if problems:
        raise SettlementError(f"{result.mechanism} clearing is inconsistent ({len(problems)} problems):\n  - "
                              + "\n  - ".join(problems))


@dataclass(frozen=True)
class _Market:
    orders: tuple[Order, ...]
    floor: float
    cap: float

    def side(self, side: str) -> list[Order]:
        return [o for o in self.orders if o.side == side]


def _result(market: _Market, mechanism: str, trades: list[Trade], price: float | None,
            extra: dict[str, float], elapsed_s: float) -> ClearingResult:
    matched = {o.order_id: 0.0 for o in market.orders}
    by_id = {o.order_id: o for o in market.orders}
    welfare = 0.0
    for t in trades:
        matched[t.buy_order_id] += t.energy_kwh
        matched[t.sell_order_id] += t.energy_kwh
        surplus = by_id[t.buy_order_id].limit_price_per_kwh - by_id[t.sell_order_id].limit_price_per_kwh
        welfare += (surplus + t.premium_per_kwh - t.fee_per_kwh) * t.energy_kwh
    diagnostics = {"welfare": welfare, "volume_kwh": sum(t.energy_kwh for t in trades),
                   "n_trades": float(len(trades)), "time_s": elapsed_s, **extra}
    return ClearingResult(mechanism=mechanism, trades=trades, matched_kwh=matched,
                          clearing_price_per_kwh=price, diagnostics=diagnostics)


def _trade(buy: Order, sell: Order, energy_kwh: float, price: float, fee: float = 0.0,
           premium: float = 0.0) -> Trade:
    return Trade(buyer=buy.participant, seller=sell.participant, energy_kwh=energy_kwh, price_per_kwh=price,
                 fee_per_kwh=fee, buy_order_id=buy.order_id, sell_order_id=sell.order_id, premium_per_kwh=premium)


def _pair_off(buys: Sequence[tuple[Order, float]], sells: Sequence[tuple[Order, float]],
              crossing: Callable[[Order, Order], bool]) -> tuple[list[tuple[Order, Order, float]], int, int]:
    """Walk two lists of (order, kWh) front to back, pairing energy while ``crossing(buy, sell)`` holds.

    Returns the fills ``(buy, sell, kWh)`` and the indices of the first buy and sell still holding energy
    (equal to the list length when exhausted).
    """
    fills = []
    i = j = 0
    left_b = buys[0][1] if buys else 0.0
    left_s = sells[0][1] if sells else 0.0
    while i < len(buys) and j < len(sells) and crossing(buys[i][0], sells[j][0]):
        q = min(left_b, left_s)
        if q > EPS_KWH:
            fills.append((buys[i][0], sells[j][0], q))
        left_b, left_s = left_b - q, left_s - q
        if left_b <= EPS_KWH:
            i += 1
            left_b = buys[i][1] if i < len(buys) else 0.0
        if left_s <= EPS_KWH:
            j += 1
            left_s = sells[j][1] if j < len(sells) else 0.0
    return fills, i, j


# -------------------------------------------------------------------------------------------- auction


def kda_price(last_bid: float, last_ask: float, next_bid: float | None, next_ask: float | None,
              k: float) -> float:
    """k-double-auction price ``k*b + (1-k)*a`` on the interval of market-clearing prices.

    ``b = min(last accepted bid, first ask left with energy)``, ``a = max(last accepted ask, first bid left
    with energy)``; ``None`` for a neighbour that does not exist.  ``a <= b`` whenever the inputs come from a
    completed pairing, so the price lies between the last accepted ask and the last accepted bid.
    """
    b = last_bid if next_ask is None else min(last_bid, next_ask)
    a = last_ask if next_bid is None else max(last_ask, next_bid)
    return k * b + (1.0 - k) * a


def _price_time_priority(orders: Sequence[Order], side: str) -> list[Order]:
    sign = -1.0 if side == "buy" else 1.0
    return sorted((o for o in orders if o.side == side),
                  key=lambda o: (sign * o.limit_price_per_kwh, o.arrival, o.order_id))


def _clear_auction(market: _Market, k: float) -> _Cleared:
    bids = _price_time_priority(market.orders, "buy")
    asks = _price_time_priority(market.orders, "sell")
    fills, i, j = _pair_off([(o, o.energy_kwh) for o in bids], [(o, o.energy_kwh) for o in asks],
                            lambda b, a: b.limit_price_per_kwh >= a.limit_price_per_kwh)
    if not fills:
        return [], None, {}
    last_bid, last_ask = fills[-1][0].limit_price_per_kwh, fills[-1][1].limit_price_per_kwh
    next_bid = bids[i].limit_price_per_kwh if i < len(bids) else None
    next_ask = asks[j].limit_price_per_kwh if j < len(asks) else None
    price = kda_price(last_bid, last_ask, next_bid, next_ask, k)
    return [_trade(b, s, q, price) for b, s, q in fills], price, {}


# ----------------------------------------------------------------------------------------- pay as bid


def tie_break_key(seed: int, order_id: str) -> int:
    """A pseudo-random 64-bit number drawn from ``seed`` and the order's id alone (BLAKE2b, so the same on
    every run and platform): orders with equal ``arrival`` are taken in increasing key, a seeded random
    order that does not depend on where an order sits in the book."""
    digest = hashlib.blake2b(f"{seed}:{order_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def arrival_sequence(orders: Sequence[Order], seed: int) -> list[Order]:
    """The priority of a continuous double auction: by ``arrival`` (the rank of the submission time, see
    :func:`screen_orders`), ties by :func:`tie_break_key`, then by ``order_id``.  A permutation of the same
    orders gives the same sequence."""
    return sorted(orders, key=lambda o: (o.arrival, tie_break_key(seed, o.order_id), o.order_id))


def _clear_pay_as_bid(market: _Market, seed: int) -> _Cleared:
    """Continuous double auction.  Heap keys: ask -> price, bid -> -price, so the best resting order is the
    smallest key (then the earliest) and an incoming order crosses while ``best key <= own key`` with
    ``own key`` = bid price for a buy, -ask price for a sell."""
    resting: dict[str, list[tuple[float, int, Order]]] = {"buy": [], "sell": []}
    left = {o.order_id: o.energy_kwh for o in market.orders}
    trades: list[Trade] = []
    for seq, order in enumerate(arrival_sequence(market.orders, seed)):
        is_buy = order.side == "buy"
        own_key = order.limit_price_per_kwh if is_buy else -order.limit_price_per_kwh
        book = resting["sell" if is_buy else "buy"]
        while left[order.order_id] > EPS_KWH and book and book[0][0] <= own_key:
            rest = book[0][2]
            q = min(left[order.order_id], left[rest.order_id])
            buy, sell = (order, rest) if is_buy else (rest, order)
            trades.append(_trade(buy, sell, q, rest.limit_price_per_kwh))
            left[order.order_id] -= q
            left[rest.order_id] -= q
            if left[rest.order_id] <= EPS_KWH:
                heapq.heappop(book)
        if left[order.order_id] > EPS_KWH:
            heapq.heappush(resting[order.side], (-own_key, seq, order))
    return trades, None, {}


# ------------------------------------------------------------------------------------------------ sdr


def sdr_prices(sdr: float, floor: float, cap: float) -> tuple[float, float]:
    """Internal (sell, buy) prices from the supply-demand ratio, Liu et al. (IEEE TPWRS 2017).

    With ``SDR = total sell energy / total buy energy``, ``f = floor`` (buy-back) and ``r = cap`` (retail)::

        sell(SDR) = f * r / ((r - f) * SDR + f)          for 0 <= SDR <= 1,   f   for SDR > 1
        buy(SDR)  = sell(SDR) * SDR + r * (1 - SDR)      for 0 <= SDR <= 1,   f   for SDR > 1

    ``sell`` falls from ``r`` (SDR = 0) to ``f`` (SDR = 1), so both lie in ``[f, r]``; ``buy`` is a buyer's
    average cost when the share ``1 - SDR`` of its demand is topped up from the grid at ``r``.  The P2P
    trades themselves are all at ``sell``.  Needs ``f > 0``.
    """
    if sdr >= 1.0:
        return floor, floor
    sell = floor * cap / ((cap - floor) * sdr + floor)
    sell = min(max(sell, floor), cap)  # guard the float rounding of the formula
    return sell, sell * sdr + cap * (1.0 - sdr)


def _sdr_participation(buys: Sequence[Order], sells: Sequence[Order], floor: float,
                       cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Which orders take part: repeatedly drop the order whose limit the SDR sell price violates most
    (a buyer bidding below it, a seller asking above it; ties drop the buyer) until nobody is violated."""
    value = np.array([o.limit_price_per_kwh for o in buys])
    cost = np.array([o.limit_price_per_kwh for o in sells])
    e_buy = np.array([o.energy_kwh for o in buys])
    e_sell = np.array([o.energy_kwh for o in sells])
    in_b = np.ones(len(buys), dtype=bool)
    in_s = np.ones(len(sells), dtype=bool)
    while in_b.any() and in_s.any():
        price, _ = sdr_prices(e_sell[in_s].sum() / e_buy[in_b].sum(), floor, cap)
        gap_b = np.where(in_b, price - value, -np.inf)
        gap_s = np.where(in_s, cost - price, -np.inf)
        worst_b, worst_s = int(np.argmax(gap_b)), int(np.argmax(gap_s))
        if max(gap_b[worst_b], gap_s[worst_s]) <= 0.0:
            break
        if gap_b[worst_b] >= gap_s[worst_s]:
            in_b[worst_b] = False
        else:
            in_s[worst_s] = False
    return in_b, in_s


def _clear_sdr(market: _Market) -> _Cleared:
    """SDR pricing; participants whose limits the price violates are excluded (see ``_sdr_participation``),
    then energy is allocated pro rata: if SDR <= 1 every seller sells all and each buyer gets SDR of its
    demand, else every buyer is served and each seller sells 1/SDR of its offer.  Buyers and sellers are
    paired in arrival order."""
    buys = sorted(market.side("buy"), key=lambda o: (o.arrival, o.order_id))
    sells = sorted(market.side("sell"), key=lambda o: (o.arrival, o.order_id))
    if not buys or not sells:
        return [], None, {}
    in_b, in_s = _sdr_participation(buys, sells, market.floor, market.cap)
    excluded = float((~in_b).sum() + (~in_s).sum())
    buys = [o for o, keep in zip(buys, in_b, strict=True) if keep]
    sells = [o for o, keep in zip(sells, in_s, strict=True) if keep]
    if not buys or not sells:
        return [], None, {"excluded_orders": excluded}
    supply, demand = sum(o.energy_kwh for o in sells), sum(o.energy_kwh for o in buys)
    sdr = supply / demand
    sell_price, buy_price = sdr_prices(sdr, market.floor, market.cap)
    buy_share, sell_share = min(sdr, 1.0), min(1.0 / sdr, 1.0)
    fills, _, _ = _pair_off([(o, o.energy_kwh * buy_share) for o in buys],
                            [(o, o.energy_kwh * sell_share) for o in sells], lambda _b, _s: True)
    trades = [_trade(b, s, q, sell_price) for b, s, q in fills]
    extra = {"sdr": sdr, "sell_price_per_kwh": sell_price, "buy_price_per_kwh": buy_price,
             "excluded_orders": excluded}
    return trades, sell_price, extra


# ------------------------------------------------------------------------------------------ bilateral


@dataclass(frozen=True)
class BilateralBook:
    """The bilateral market: buy and sell orders and the admissible pairs between them.

    A pair ``(b, s)`` (indices into ``buys``/``sells``) is admissible when the two orders belong to different
    participants, the buyer's bid on the pair ``v_b + w_bs`` (limit plus its premium for that seller) is not
    below the ask, and the surplus ``v_b + w_bs - c_s - t_bs`` is positive (any other pair trades zero at the
    optimum, or would need a bid below an ask).  Several orders of one participant on one side are separate
    orders; a participant's premium applies to each of its buy orders.
    """

    buys: tuple[Order, ...]
    sells: tuple[Order, ...]
    pairs: tuple[tuple[int, int], ...]
    pair_cost_per_kwh: tuple[float, ...]   # t_bs per admissible pair
    floor: float
    cap: float
    pair_premium_per_kwh: tuple[float, ...] = ()  # w_bs per admissible pair (empty: all 0)

    def premium(self, p: int) -> float:
        """``w_bs`` of admissible pair ``p``."""
        return self.pair_premium_per_kwh[p] if self.pair_premium_per_kwh else 0.0


def build_bilateral_book(orders: Sequence[Order], trade_cost_per_kwh: TradeCosts, floor: float,
                         cap: float, premium_per_kwh: TradePremia | None = None) -> BilateralBook:
    """Split ``orders`` by side and list the admissible pairs with their cost and premium (missing pairs 0)."""
    buys = tuple(o for o in orders if o.side == "buy")
    sells = tuple(o for o in orders if o.side == "sell")
    premia = premium_per_kwh or {}
    pairs, costs, prems = [], [], []
    for b, buy in enumerate(buys):
        for s, sell in enumerate(sells):
            key = (buy.participant, sell.participant)
            fee, premium = trade_cost_per_kwh.get(key, 0.0), premia.get(key, 0.0)
            surplus = buy.limit_price_per_kwh + premium - sell.limit_price_per_kwh
            if buy.participant != sell.participant and surplus >= 0.0 and surplus - fee > 0.0:
                pairs.append((b, s))
                costs.append(fee)
                prems.append(premium)
    return BilateralBook(buys, sells, tuple(pairs), tuple(costs), floor, cap, tuple(prems) if premia else ())


def pair_price_bounds(value: float, cost: float, fee: float, floor: float, cap: float,
                      premium: float = 0.0) -> tuple[float, float]:
    """Buyer prices ``p`` allowed on a pair: ``p <= v_b + w_bs``, ``p - t_bs >= c_s``, and ``p``, ``p - t_bs``
    in ``[floor, cap]``, i.e. ``[max(floor, c_s + t_bs), min(v_b + w_bs, cap + t_bs)]`` (non-empty on
    admissible pairs with ``t_bs >= floor - cap`` and ``w_bs >= 0``)."""
    return max(floor, cost + fee), min(value + premium, cap + fee)


def buyer_balance_rule(m, b):
    """Buyer balance: q_buy_b = sum_{s: (b,s) admissible} x_bs   (dual = price buyer b pays)."""
    return m.q_buy[b] == sum(m.x[p] for p in m.pairs_of_buy[b])


def seller_balance_rule(m, s):
    """Seller balance: sum_{b: (b,s) admissible} x_bs - q_sell_s = 0   (dual = price seller s receives)."""
    return sum(m.x[p] for p in m.pairs_of_sell[s]) - m.q_sell[s] == 0


def welfare_rule(m):
    """Social welfare: sum_b v_b q_buy_b - sum_s c_s q_sell_s + sum_bs (w_bs - t_bs) x_bs
    (``w_bs``: buyer b's premium for seller s's energy, ``t_bs``: the pair's network charge)."""
    return (sum(m.value[b] * m.q_buy[b] for b in m.B) - sum(m.cost[s] * m.q_sell[s] for s in m.S)
            + sum((m.pair_premium[p] - m.pair_cost[p]) * m.x[p] for p in m.P))


def build_bilateral_model(book: BilateralBook) -> pyo.ConcreteModel:
    """Welfare-maximising bilateral market LP (does not mutate ``book``).

    Variables: ``q_buy_b in [0, E_b]``, ``q_sell_s in [0, E_s]``, ``x_bs >= 0`` on admissible pairs.  At the
    optimum the balance duals ``pi_b``, ``pi_s`` satisfy ``pi_b - pi_s = t_bs - w_bs`` on traded pairs,
    ``pi_b <= v_b`` for served buyers and ``pi_s >= c_s`` for selling sellers.  ``pi_b`` is buyer b's price of
    undifferentiated energy; on pair ``bs`` it pays ``pi_b + w_bs = pi_s + t_bs``: its premium for a preferred
    seller goes, as a higher price, to that seller whenever the seller's energy is scarce.
    """
    m = pyo.ConcreteModel(name="bilateral_p2p")
    m.B = pyo.Set(initialize=range(len(book.buys)))
    m.S = pyo.Set(initialize=range(len(book.sells)))
    m.P = pyo.Set(initialize=range(len(book.pairs)))
    of_buy: dict[int, list[int]] = {b: [] for b in range(len(book.buys))}
    of_sell: dict[int, list[int]] = {s: [] for s in range(len(book.sells))}
    for p, (b, s) in enumerate(book.pairs):
        of_buy[b].append(p)
        of_sell[s].append(p)
    m.pairs_of_buy = pyo.Set(m.B, initialize=of_buy)
    m.pairs_of_sell = pyo.Set(m.S, initialize=of_sell)
    m.value = pyo.Param(m.B, initialize=lambda _m, b: book.buys[b].limit_price_per_kwh)
    m.cost = pyo.Param(m.S, initialize=lambda _m, s: book.sells[s].limit_price_per_kwh)
    m.pair_cost = pyo.Param(m.P, initialize=lambda _m, p: book.pair_cost_per_kwh[p])
    m.pair_premium = pyo.Param(m.P, initialize=lambda _m, p: book.premium(p))
    m.q_buy = pyo.Var(m.B, bounds=lambda _m, b: (0.0, book.buys[b].energy_kwh))
    m.q_sell = pyo.Var(m.S, bounds=lambda _m, s: (0.0, book.sells[s].energy_kwh))
    m.x = pyo.Var(m.P, within=pyo.NonNegativeReals)
    m.buyer_balance = pyo.Constraint(m.B, rule=buyer_balance_rule)
    m.seller_balance = pyo.Constraint(m.S, rule=seller_balance_rule)
    m.welfare = pyo.Objective(rule=welfare_rule, sense=pyo.maximize)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    return m


@dataclass(frozen=True)
class BilateralSolution:
    """Plain results of the bilateral LP: energy per admissible pair and the balance duals."""

    x_kwh: np.ndarray              # per pair, in BilateralBook.pairs order
    buyer_price_per_kwh: np.ndarray
    seller_price_per_kwh: np.ndarray
    welfare: float


def extract_bilateral(model: pyo.ConcreteModel) -> BilateralSolution:
    """Read trades and balance duals (through the kept constraint handles) from a solved model."""
    return BilateralSolution(
        x_kwh=np.array([pyo.value(model.x[p]) for p in model.P]),
        buyer_price_per_kwh=np.array([model.dual[model.buyer_balance[b]] for b in model.B]),
        seller_price_per_kwh=np.array([model.dual[model.seller_balance[s]] for s in model.S]),
        welfare=float(pyo.value(model.welfare)),
    )


def _pair_trades(book: BilateralBook, x_kwh: Sequence[float],
                 raw_price: Sequence[float]) -> tuple[list[Trade], int]:
    """Trades on pairs with energy, buyer price = ``raw_price`` clipped to :func:`pair_price_bounds`.

    Returns the trades and how many prices needed clipping by more than float noise (LP duals only need it
    with negative trade costs; ADMM prices before full convergence)."""
    trades, clipped = [], 0
    for p, ((b, s), fee, q, raw) in enumerate(zip(book.pairs, book.pair_cost_per_kwh, x_kwh, raw_price,
                                                  strict=True)):
        if q <= EPS_KWH:
            continue
        buy, sell, premium = book.buys[b], book.sells[s], book.premium(p)
        lo, hi = pair_price_bounds(buy.limit_price_per_kwh, sell.limit_price_per_kwh, fee,
                                   book.floor, book.cap, premium)
        price = min(max(raw, lo), hi)
        clipped += abs(price - raw) > 1e-9
        trades.append(_trade(buy, sell, float(q), float(price), fee, premium))
    return trades, clipped


def _clear_bilateral(market: _Market, costs: TradeCosts, premia: TradePremia) -> _Cleared:
    book = build_bilateral_book(market.orders, costs, market.floor, market.cap, premia)
    if not book.pairs:
        return [], None, {}
    solution = extract_bilateral(solve(build_bilateral_model(book), context="p2p bilateral clearing"))
    raw = [solution.buyer_price_per_kwh[b] + book.premium(p) for p, (b, _) in enumerate(book.pairs)]
    trades, clipped = _pair_trades(book, solution.x_kwh, raw)
    return trades, None, {"lp_welfare": solution.welfare, "prices_clipped": float(clipped)}


def _clear_bilateral_admm(market: _Market, costs: TradeCosts, premia: TradePremia, rho: float,
                          stop: StoppingRule, max_iter: int) -> _Cleared:
    """Normalise (prices: ``(p - floor) / (cap - floor)``, energies: / largest order), run ADMM, map back."""
    book = build_bilateral_book(market.orders, costs, market.floor, market.cap, premia)
    if not book.pairs:
        return [], None, {"iterations": 0.0, "primal_residual": 0.0, "dual_residual": 0.0}
    p_scale = market.cap - market.floor  # > 0: an admissible pair needs v_b - c_s - t_bs > 0 with t >= -band
    e_scale = max(o.energy_kwh for o in market.orders)
    rows, cols = np.array(book.pairs).T
    mask = np.zeros((len(book.buys), len(book.sells)), dtype=bool)
    mask[rows, cols] = True
    pair_cost = np.zeros(mask.shape)
    pair_cost[rows, cols] = np.array(book.pair_cost_per_kwh) / p_scale
    premium = np.zeros(mask.shape)
    premium[rows, cols] = np.array([book.premium(p) for p in range(len(book.pairs))]) / p_scale
    outcome = solve_bilateral_admm(
        value=(np.array([o.limit_price_per_kwh for o in book.buys]) - market.floor) / p_scale,
        cost=(np.array([o.limit_price_per_kwh for o in book.sells]) - market.floor) / p_scale,
        pair_cost=pair_cost, mask=mask,
        buy_e=np.array([o.energy_kwh for o in book.buys]) / e_scale,
        sell_e=np.array([o.energy_kwh for o in book.sells]) / e_scale,
        rho=rho, stop=stop, max_iter=max_iter, premium=premium)
    if not outcome.converged:
        logger.warning("bilateral ADMM stopped after %d iterations (primal %.2e, dual %.2e above the %s); "
                       "trades are feasible but welfare may be below optimum", outcome.iterations,
                       outcome.primal_residual, outcome.dual_residual, stop)
    seller_price = market.floor + outcome.seller_price[rows, cols] * p_scale
    trades, clipped = _pair_trades(book, outcome.trades[rows, cols] * e_scale,
                                   seller_price + np.array(book.pair_cost_per_kwh))
    extra = {"iterations": float(outcome.iterations), "primal_residual": outcome.primal_residual,
             "dual_residual": outcome.dual_residual, "rho_final": outcome.rho,
             "converged": float(outcome.converged), "prices_clipped": float(clipped)}
    return trades, None, extra
