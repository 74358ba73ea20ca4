"""Layer III: the 5-minute inter-VPP market, reusing the Layer I clearing code.

Two books per interval: ``up`` (more injection) and ``down`` (less injection). A VPP short of delivery in a
direction buys; a VPP with spare capability sells. The seller's members deliver for the buyer, so the ISO
credits the energy to the buyer and debits it from the seller (``credit_kwh``, + = injection credited):
up: buyer +E, seller -E; down: buyer -E, seller +E.

Physical settings (scenario ``vpp_market.physical``):
- ``financial``: VPPs with no direct connection; each trade pays a wheeling charge per kWh to the network
  operator (the buyer's limit is lowered by the charge before clearing, and the charge is the trade's fee).
- ``tie``: feeders joined by a tie line; the traded energy of each direction is limited by the tie capacity
  over the interval (trades scaled down pro rata when the book would exceed it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from federates.vpp.p2p_market import Order, Trade, clear

DIRECTIONS = ("up", "down")


@dataclass(frozen=True)
class Layer3Clearing:
    trades: list[tuple[str, Trade]]          # (direction, trade)
    credit_kwh: dict[str, float]
    matched_kwh: dict[str, float]            # order_id -> energy traded (after any tie limit)


def clear_layer3(books: dict[str, list[Order]], *, mechanism: str, physical: str, tie_capacity_kw: float,
                 wheeling_charge_per_kwh: float, period_s: int, price_floor_per_kwh: float,
                 price_cap_per_kwh: float) -> Layer3Clearing:
    trades: list[tuple[str, Trade]] = []
    credit: dict[str, float] = {}
    matched: dict[str, float] = {}
    wheeling = wheeling_charge_per_kwh if physical == "financial" else 0.0
    for direction in DIRECTIONS:
        orders = [_net_of_wheeling(o, wheeling, price_floor_per_kwh) for o in books.get(direction, [])]
        orders = [o for o in orders if o is not None]
        if not any(o.side == "buy" for o in orders) or not any(o.side == "sell" for o in orders):
            continue
        result = clear(orders, mechanism, price_floor_per_kwh=price_floor_per_kwh,
                       price_cap_per_kwh=price_cap_per_kwh)
        cleared = [replace(t, price_per_kwh=t.price_per_kwh + wheeling, fee_per_kwh=t.fee_per_kwh + wheeling)
                   for t in result.trades]
        if physical == "tie":
            cleared = _limit_to_tie(cleared, tie_capacity_kw * period_s / 3600.0)
        sign = 1.0 if direction == "up" else -1.0
        for t in cleared:
            credit[t.buyer] = credit.get(t.buyer, 0.0) + sign * t.energy_kwh
            credit[t.seller] = credit.get(t.seller, 0.0) - sign * t.energy_kwh
            trades.append((direction, t))
            matched[t.buy_order_id] = matched.get(t.buy_order_id, 0.0) + t.energy_kwh
            matched[t.sell_order_id] = matched.get(t.sell_order_id, 0.0) + t.energy_kwh
    return Layer3Clearing(trades, credit, matched)


def _net_of_wheeling(order: Order, wheeling: float, floor: float) -> Order | None:
    if order.side == "sell" or wheeling == 0.0:
        return order
    limit = order.limit_price_per_kwh - wheeling
    return replace(order, limit_price_per_kwh=limit) if limit >= floor else None


def _limit_to_tie(trades: list[Trade], limit_kwh: float) -> list[Trade]:
    total = sum(t.energy_kwh for t in trades)
    if total <= limit_kwh:
        return trades
    scale = limit_kwh / total
    return [replace(t, energy_kwh=t.energy_kwh * scale) for t in trades]
