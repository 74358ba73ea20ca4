"""Inter-VPP market federate (Layer III): clears every 5 minutes for the next interval."""

from __future__ import annotations

from federates.common.helics_shell import Shell
from federates.common.messages import L3Order, L3Result, TradeMsg
from federates.common.timebase import TICK_S, Phase, phases_of
from federates.common.wiring import VppMarketFederate, load_federate_config
from federates.vpp.p2p_market import Order, Submission, screen_orders
from federates.vpp_market.clearing import DIRECTIONS, clear_layer3

PRICE_CAP_PER_KWH = 10.0


def main(config_path: str) -> None:
    cfg: VppMarketFederate = load_federate_config(config_path, VppMarketFederate)
    m = cfg.market
    with Shell(cfg.runtime) as shell:
        for step in shell.steps(phases_of("vpp_market", cfg.runtime.mode)):
            nxt = step.interval + 1
            subs: dict[str, list[Submission]] = {d: [] for d in DIRECTIONS}
            for vpp in cfg.vpps:
                msg = shell.read(f"{vpp}/l3_orders", L3Order)
                if msg is None or msg.interval != nxt:
                    continue
                for d in DIRECTIONS:
                    subs[d] += [Submission(Order(o.order_id, o.participant, o.side, o.energy_kwh,
                                                 o.limit_price_per_kwh, arrival=len(subs[d])),
                                           sender=vpp, submitted_s=msg.time_s) for o in getattr(msg, d)]
            hosts = {v: v for v in cfg.vpps}
            screened = {d: screen_orders(subs[d], gate_s=step.tick_start_s + Phase.L3_ORDER.offset_s, hosts=hosts,
                                         price_floor_per_kwh=0.0, price_cap_per_kwh=PRICE_CAP_PER_KWH)
                        for d in DIRECTIONS}
            books = {d: accepted for d, (accepted, _) in screened.items()}
            result = clear_layer3(books, mechanism=m.mechanism, physical=m.physical,
                                  tie_capacity_kw=m.tie_capacity_kw, wheeling_charge_per_kwh=m.wheeling_charge_per_kwh,
                                  period_s=TICK_S, price_floor_per_kwh=0.0, price_cap_per_kwh=PRICE_CAP_PER_KWH)
            for direction, t in result.trades:
                shell.recorder.trade(time=step.time_s, slot=nxt, layer=3, market=f"vpp_market_{direction}",
                                     buyer=t.buyer, seller=t.seller, energy_kwh=t.energy_kwh,
                                     price_per_kwh=t.price_per_kwh, fee_per_kwh=t.fee_per_kwh, item="l3")
            for d, (accepted, rejected) in screened.items():
                shell.recorder.book(time=step.time_s, slot=nxt, market=f"vpp_market_{d}", orders=accepted,
                                    rejections=rejected, matched_kwh=result.matched_kwh)
            shell.publish("vpp_market/results", L3Result(
                time_s=step.time_s, interval=nxt, credit_kwh=result.credit_kwh,
                trades=[TradeMsg(buyer=t.buyer, seller=t.seller, energy_kwh=t.energy_kwh,
                                 price_per_kwh=t.price_per_kwh, fee_per_kwh=t.fee_per_kwh, direction=d)
                        for d, t in result.trades]), target=nxt)
