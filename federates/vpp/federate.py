"""Community VPP federate: the feeder's P2P platform (Layer I), ancillary bidder (Layer II), Layer III trader
and voltage guard. A thin shell around :class:`federates.vpp.platform.CommunityVpp`.
"""

from __future__ import annotations

import gc
from typing import TypeVar

from federates.common.helics_shell import Shell
from federates.common.messages import (
    AncillaryOffer,
    Awards,
    DispatchSignal,
    FeederStateMsg,
    Injections,
    L3Order,
    L3Result,
    OrderBook,
    OrderMsg,
    Plans,
    Positions,
    ReserveCommitments,
    Setpoints,
)
from federates.common.timebase import TICK_S, Phase, Step, local_hour, phases_of
from federates.common.wiring import VppFederate, load_federate_config
from federates.vpp.community_battery import energy_settlement
from federates.vpp.corrective import CorrectiveController
from federates.vpp.p2p_market import Order, Submission
from federates.vpp.platform import CommunityVpp

V = TypeVar("V")


class VppShell:
    def __init__(self, cfg: VppFederate, shell: Shell):
        self.cfg, self.shell, self.me = cfg, shell, cfg.runtime.name
        self.vpp = CommunityVpp(name=self.me, members=cfg.members, market=cfg.market, config=cfg.vpp,
                                tariff=cfg.tariff, penalty_multiplier=cfg.penalty_multiplier,
                                trade_distance=cfg.trade_distance, trade_premium=cfg.trade_premium,
                                seed=cfg.runtime.seed,
                                guard=CorrectiveController(v_min_pu=cfg.v_min_pu, v_max_pu=cfg.v_max_pu))
        self.p_kw: dict[str, float] = {}
        self.required_kw: dict[int, float] = {}   # what the ISO asks of this VPP, per interval
        self.asked_kw: dict[int, float] = {}      # what this VPP asked of its members, per interval
        self.regulation = (0.0, 0.0)
        # the feeder's own setpoints key (where it applies the community battery), when the wiring declares it
        self.feeder_setpoints = f"{self.me}/setpoints" in cfg.runtime.publications

    def hour(self, time_s: float) -> float:
        return local_hour(self.cfg.runtime.start, time_s)

    def step(self, step: Step) -> None:
        # members' plans arrive at L1_COMMIT: read them at any step but one of that second, where HELICS may grant
        # us the time before the prosumers have published
        if step.phase.offset_s != Phase.L1_COMMIT.offset_s:
            for fed in self.cfg.prosumer_feds:
                plans = self.shell.read(f"{fed}/plans", Plans)
                if plans is not None:
                    self.vpp.take_plans(plans.plans)
        handler = {Phase.MEASURE: self.measure, Phase.L1_CLEAR: self.clear_layer1, Phase.L2_OFFER: self.offer,
                   Phase.L2_AWARD: self.award, Phase.L3_ORDER: self.layer3, Phase.SETPOINT: self.setpoints}
        handler[step.phase](step)

    def measure(self, step: Step) -> None:
        for fed in self.cfg.prosumer_feds:
            inj = self.shell.read(f"{fed}/injections", Injections)
            if inj is not None:
                self.p_kw.update(inj.p_kw)
                self.vpp.headroom_up_kw.update(inj.up_kw)
                self.vpp.headroom_down_kw.update(inj.down_kw)
        state = self.shell.read(f"feeder_{self.cfg.feeder}/state", FeederStateMsg)
        if state is None:
            return
        # a failed power flow repeats old voltages (converged False): the guard must not act on them
        v_pu = state.v_pu if state.converged else {}
        metered = state.members_p_kw + state.community_battery_kw   # what the ISO measures our delivery on
        actions = self.vpp.observe(step.interval, v_pu, self.p_kw, metered, self.asked_kw.get(step.interval, 0.0))
        if self.vpp.battery is not None:
            self._settle_battery(step, state)
        for a in actions:
            self.shell.recorder.add("corrective", time=step.tick_start_s, feeder=self.cfg.feeder,
                                    prosumer=a.prosumer, kind=a.kind, value=a.v_pu,
                                    max_export_kw=a.max_export_kw, max_import_kw=a.max_import_kw)

    def _settle_battery(self, step: Step, state: FeederStateMsg) -> None:
        """The community battery's energy of the interval just metered, settled with the utility."""
        hour = self.hour(step.tick_start_s)
        kwh, amount = energy_settlement(state.community_battery_kw, state.members_p_kw,
                                        self.cfg.tariff.retail_at(hour), self.cfg.tariff.export_price_at(hour))
        if kwh > 0:
            self.shell.recorder.add("ledger", time=step.tick_start_s, participant=self.me, counterparty="utility",
                                    item="community_battery_energy", energy_kwh=kwh, amount=amount)

    def clear_layer1(self, step: Step) -> None:
        submissions = []
        for fed in self.cfg.prosumer_feds:
            book = self.shell.read(f"{fed}/orders", OrderBook)
            if book is None:
                continue
            submissions += [Submission(Order(o.order_id, o.participant, o.side, o.energy_kwh,
                                             o.limit_price_per_kwh, arrival=len(submissions) + i),
                                       sender=fed, submitted_s=book.time_s) for i, o in enumerate(book.orders)]
        gate_s = step.tick_start_s + Phase.L1_BID.offset_s
        out = self.vpp.clear_layer1(submissions, gate_s, self.hour(step.l1_slot * 1800))
        rec = self.shell.recorder
        rec.book(time=step.time_s, slot=step.l1_slot, market=self.me, orders=out.orders,
                 rejections=out.rejections, matched_kwh=out.result.matched_kwh)
        for t in out.result.trades:
            rec.trade(time=step.time_s, slot=step.l1_slot, layer=1, market=self.me, buyer=t.buyer, seller=t.seller,
                      energy_kwh=t.energy_kwh, price_per_kwh=t.price_per_kwh, fee_per_kwh=t.fee_per_kwh)
        for fed, mine in self._by_federate(out.net_kwh).items():
            self.shell.publish(f"{self.me}/positions/{fed}",
                               Positions(time_s=step.time_s, slot=step.l1_slot, net_kwh=mine,
                                         clearing_price_per_kwh=out.result.clearing_price_per_kwh),
                               target=step.l1_slot)

    def offer(self, step: Step) -> None:
        decision, baseline = self.vpp.offers(step.l2_slot, self.hour(step.l2_slot * 900))
        self.shell.publish(f"{self.me}/offers", AncillaryOffer(
            time_s=step.time_s, slot=step.l2_slot, vpp=self.me, offered_kw=decision.offers_kw,
            offer_price_per_mw_h=decision.offer_price_per_mw_h, baseline_p_kw=baseline), target=step.l2_slot)

    def award(self, step: Step) -> None:
        awards = self.shell.read("iso/awards", Awards)
        mine = awards.awarded_kw.get(self.me, {}) if awards is not None and awards.slot == step.l2_slot else {}
        prices = awards.clearing_price_per_mw_h if awards is not None else {}
        up, down = self.vpp.take_awards(step.l2_slot, mine, prices)
        ups, downs = self._by_federate(up), self._by_federate(down)
        for fed in self.cfg.prosumer_feds:
            self.shell.publish(f"{self.me}/reserve/{fed}", ReserveCommitments(
                time_s=step.time_s, slot=step.l2_slot, up_kw=ups[fed], down_kw=downs[fed]), target=step.l2_slot)

    def layer3(self, step: Step) -> None:
        signal = self.shell.read("iso/dispatch", DispatchSignal)
        if signal is not None:
            self.regulation = (signal.regulation, signal.spin_deployed)
        nxt = step.interval + 1
        required = self.vpp.required(nxt, *self.regulation)
        self.required_kw[nxt] = required
        if not self.cfg.l3_enabled:
            return
        price = max(self.vpp.prices.get(nxt // 3, {}).values(), default=0.0)
        needs = self.vpp.layer3_needs(nxt, required, price)
        books = {"up": [], "down": []}
        for n in needs:
            books[n.direction].append(OrderMsg(order_id=f"{self.me}:{nxt}:{n.direction}:{n.side}",
                                               participant=self.me, side=n.side, energy_kwh=n.energy_kwh,
                                               limit_price_per_kwh=n.limit_price_per_kwh))
        self.shell.publish(f"{self.me}/l3_orders", L3Order(time_s=step.time_s, interval=nxt, vpp=self.me,
                                                           **books), target=nxt)

    def setpoints(self, step: Step) -> None:
        nxt = step.interval + 1
        credit_kw = 0.0
        if self.cfg.l3_enabled:
            result = self.shell.read("vpp_market/results", L3Result)
            if result is not None and result.interval == nxt:
                # energy others inject for us is delivery we need not make; energy we sell we must deliver
                credit_kw = result.credit_kwh.get(self.me, 0.0) * 3600.0 / TICK_S
        required = self.required_kw.get(nxt, 0.0)
        asked, setpoints = self.vpp.dispatch_members(nxt, required, credit_kw)
        self.asked_kw[nxt] = asked
        self._compensate(nxt, setpoints)
        battery_kw = self._dispatch_battery(nxt)
        for fed, mine in self._by_federate(setpoints).items():
            self.shell.publish(f"{self.me}/setpoints/{fed}", Setpoints(
                time_s=step.time_s, interval=nxt, setpoints=mine, community_battery_kw=battery_kw), target=nxt)
        if self.feeder_setpoints:
            self.shell.publish(f"{self.me}/setpoints", Setpoints(
                time_s=step.time_s, interval=nxt, setpoints={}, community_battery_kw=battery_kw), target=nxt)

    def _by_federate(self, per_member: dict[str, V]) -> dict[str, dict[str, V]]:
        """``per_member`` split by the prosumer federate hosting each member (every federate gets its part,
        possibly empty, so a part that empties reaches its federate too)."""
        out: dict[str, dict[str, V]] = {fed: {} for fed in self.cfg.prosumer_feds}
        for member, value in per_member.items():
            out[self.cfg.members[member]][member] = value
        return out

    def _dispatch_battery(self, interval: int) -> float:
        if self.vpp.battery is None:
            return 0.0
        p, base, delivery, corrective = self.vpp.dispatch_battery(interval)
        up, down = self.vpp.battery_reserve.get(interval // 3, (0.0, 0.0))
        self.shell.recorder.add("community_battery", time=interval * TICK_S, vpp=self.me, feeder=self.cfg.feeder,
                                p_kw=p, soc_kwh=self.vpp.battery.soc_kwh, baseline_kw=base, delivery_kw=delivery,
                                corrective_kw=corrective, reserve_up_kw=up, reserve_down_kw=down,
                                kwh=self.vpp.battery.config.kwh, eta_charge=self.vpp.battery.config.eta_charge,
                                eta_discharge=self.vpp.battery.config.eta_discharge)
        return p

    def _compensate(self, interval: int, setpoints: dict) -> None:
        """Pay members for the energy they are asked to deliver, at their own cost (before revenue sharing)."""
        delta_kw = {member: sp.delta_p_kw for member, sp in setpoints.items() if sp.delta_p_kw}
        cost = self.vpp.activation_costs(interval, delta_kw, self.hour(interval * TICK_S))
        rec = self.shell.recorder
        for member, delta in delta_kw.items():
            kwh = abs(delta) * TICK_S / 3600.0
            amount = kwh * cost[member]
            if amount > 0:
                rec.add("ledger", time=interval * TICK_S, participant=self.me, counterparty=member,
                        item="activation_compensation", energy_kwh=kwh, amount=-amount)
                rec.add("ledger", time=interval * TICK_S, participant=member, counterparty=self.me,
                        item="activation_compensation", energy_kwh=kwh, amount=amount)


# Python's cyclic garbage collector: a VPP of a thousand members allocates some 10^4 containers per 5-minute
# tick (members' plans, flexibility, setpoints, result rows) and almost none of them form cycles; with the
# default thresholds (700, 10, 10) the collector ran some 3,300 times a simulated day, 1.5 CPU-s of the replayed
# VPP of the 8500-node feeder (on the critical path; 0.15 CPU-s with these). Set-up objects are frozen out of scans.
GC_THRESHOLDS = (50_000, 10, 10)


def main(config_path: str) -> None:
    cfg: VppFederate = load_federate_config(config_path, VppFederate)
    with Shell(cfg.runtime) as shell:
        vpp = VppShell(cfg, shell)
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        for step in shell.steps(phases_of("vpp", cfg.runtime.mode)):
            vpp.step(step)
