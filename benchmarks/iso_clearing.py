"""Benchmark: ISO ancillary clearing (50 conventional offers + 10 VPPs) and VPP bidding (100 members).

Run as ``python benchmarks/iso_clearing.py``. Prints a table, then one JSON line with the figures (seconds).
Times include model build and the HiGHS solve; each case is repeated and the median is reported.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np

from federates.iso.ancillary_market import SupplyOffer, clear_ancillary, synthetic_supply_stack
from federates.vpp.aggregation import MemberFlex
from federates.vpp.ancillary_bidding import BiddingInput, decide_offers

REPEATS = 7
REQUIREMENT_KW = {"reg_up": 20_000.0, "reg_down": 15_000.0, "spin": 30_000.0}


def _vpp_offers(rng: np.random.Generator, n: int) -> list[SupplyOffer]:
    offers = []
    for i in range(n):
        capacity = float(rng.uniform(100, 1500))
        prices = {"reg_up": float(rng.uniform(5, 20)), "reg_down": float(rng.uniform(1, 8)),
                  "spin": float(rng.uniform(0, 15))}
        offers.append(SupplyOffer(f"vpp{i:02d}", capacity, prices, {p: capacity for p in prices}))
    return offers


def _members(rng: np.random.Generator, n: int) -> list[MemberFlex]:
    return [MemberFlex(f"m{i:03d}", float(rng.uniform(0, 8)), float(rng.uniform(0, 8)),
                       float(rng.uniform(0, 0.02)), float(rng.uniform(-4, 6))) for i in range(n)]


def _median_s(fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    rng = np.random.default_rng(42)
    offers = synthetic_supply_stack(42, REQUIREMENT_KW, n_units=50) + _vpp_offers(rng, 10)
    clear_s, clearing = _median_s(lambda: clear_ancillary(offers, REQUIREMENT_KW))
    inp = BiddingInput(_members(rng, 100), {"reg_up": 18.0, "reg_down": 6.0, "spin": 9.0}, 0.12,
                       battery_kwh=200.0, battery_p_kw=100.0, battery_soc_kwh=120.0)
    bid_s, decision = _median_s(lambda: decide_offers(inp))
    vpp_awarded_kw = sum(sum(a.values()) for n, a in clearing.awards_kw.items() if n.startswith("vpp"))

    print(f"{'case':<42}{'median s':>10}  result")
    print(f"{'ISO clearing, 50 units + 10 VPPs':<42}{clear_s:>10.4f}  prices $/MW-h "
          + ", ".join(f"{p}={v:.2f}" for p, v in clearing.clearing_price_per_mw_h.items())
          + f"; VPPs awarded {vpp_awarded_kw:.0f} kW")
    print(f"{'VPP bidding, 100 members + battery':<42}{bid_s:>10.4f}  offers kW "
          + ", ".join(f"{p}={v:.0f}" for p, v in decision.offers_kw.items()))
    print(json.dumps({"iso_clear_60_offers_s": round(clear_s, 5), "vpp_bid_100_members_s": round(bid_s, 5),
                      "repeats": REPEATS, "clearing_price_per_mw_h": clearing.clearing_price_per_mw_h,
                      "vpp_awarded_kw": round(vpp_awarded_kw, 1), "vpp_offers_kw": decision.offers_kw}))


if __name__ == "__main__":
    main()
