"""ISO ancillary-market federate: clears every 15 minutes, signals and settles every 5 minutes.

At the start of each tick (SETTLE, L3_SIGNAL) it settles the interval just metered and sends the dispatch signal
for the next one; at L2_CLEAR (every 15 minutes) it clears the slot ahead from the VPPs' offers.
"""

from __future__ import annotations

from federates.common.helics_shell import Shell
from federates.common.messages import AncillaryOffer, Awards, DispatchSignal, FeederStateMsg, L3Result
from federates.common.timebase import TICK_S, Phase, Step, phases_of
from federates.common.wiring import IsoFederate, load_federate_config
from federates.iso.operator import IsoOperator


def main(config_path: str) -> None:
    cfg: IsoFederate = load_federate_config(config_path, IsoFederate)
    rt = cfg.runtime
    iso = IsoOperator(cfg.iso, cfg.vpps, rt.start, rt.duration_s, rt.seed)
    l3 = "vpp_market/results" in rt.subscriptions
    credits: dict[int, dict[str, float]] = {}
    offers: dict[int, dict[str, AncillaryOffer]] = {}
    with Shell(rt) as shell:
        for step in shell.steps(phases_of("iso", cfg.runtime.mode)):
            if step.phase == Phase.SETTLE:
                if l3:
                    result = shell.read("vpp_market/results", L3Result)
                    if result is not None:
                        credits[result.interval] = result.credit_kwh
                metered = step.interval - 1  # the interval that ended when this tick began
                _settle(shell, iso, cfg.vpps, metered, credits.get(metered, {}), offers)
            elif step.phase == Phase.L2_CLEAR:
                got = [o for v in cfg.vpps if (o := shell.read(f"{v}/offers", AncillaryOffer)) is not None
                       and o.slot == step.l2_slot]
                offers[step.l2_slot] = {o.vpp: o for o in got}
                clearing = iso.clear(step.l2_slot, got)
                _record_awards(shell, step, clearing, offers[step.l2_slot])
                shell.publish("iso/awards", Awards(time_s=step.time_s, slot=step.l2_slot,
                                                   clearing_price_per_mw_h=clearing.prices,
                                                   awarded_kw=clearing.awards), target=step.l2_slot)
            else:
                reg, spin = iso.signal(step.interval + 1)
                shell.publish("iso/dispatch", DispatchSignal(time_s=step.time_s, interval=step.interval + 1,
                                                             regulation=reg, spin_deployed=spin),
                              target=step.interval + 1)


def _record_awards(shell: Shell, step: Step, clearing, offers: dict[str, AncillaryOffer]) -> None:
    for vpp, offer in offers.items():
        for product, kw in offer.offered_kw.items():
            shell.recorder.add("ancillary", time=step.time_s, slot=step.l2_slot, vpp=vpp, product=product,
                               offered_kw=kw, offer_price=offer.offer_price_per_mw_h.get(product, 0.0),
                               awarded_kw=clearing.awards.get(vpp, {}).get(product, 0.0),
                               clearing_price=clearing.prices.get(product, 0.0), required_kw=float("nan"),
                               delivered_kw=float("nan"),
                               performance=float("nan"), penalty=0.0, penalty_without_l3=0.0)


def _settle(shell: Shell, iso: IsoOperator, vpps: list[str], interval: int, credits: dict[str, float],
            offers: dict[int, dict[str, AncillaryOffer]]) -> None:
    """Settle each VPP's delivery in ``interval`` from the feeder state published for it (rows stamped with the
    interval's start)."""
    slot = interval // 3
    t = interval * TICK_S
    for vpp in vpps:
        state = shell.read(f"feeder_{vpp.removeprefix('vpp_')}/state", FeederStateMsg)
        if state is None:
            continue
        # members_p_kw is the prosumers' meter reading, valid even when the power flow failed (converged False)
        metered = state.members_p_kw + state.community_battery_kw  # the VPP's community battery delivers too
        out = iso.settle(interval, vpp, metered, credits.get(vpp, 0.0))
        if out is None:
            continue
        settlement, required, delivered = out
        alone, _, _ = iso.settle(interval, vpp, metered, 0.0)
        clearing = iso.cleared[slot]
        offer = offers.get(slot, {}).get(vpp)
        for p in settlement.capacity_payment:
            shell.recorder.add("ancillary", time=t, slot=slot, vpp=vpp, product=p,
                               offered_kw=offer.offered_kw.get(p, 0.0) if offer else 0.0, offer_price=float("nan"),
                               awarded_kw=clearing.awards[vpp].get(p, 0.0), clearing_price=clearing.prices.get(p, 0.0),
                               required_kw=required.get(p, 0.0), delivered_kw=delivered[p],
                               performance=settlement.performance_score[p], penalty=settlement.penalty[p],
                               penalty_without_l3=alone.penalty[p])
            shell.recorder.add("ledger", time=t, participant=vpp, counterparty="iso",
                               item=f"ancillary_{p}", energy_kwh=0.0, amount=settlement.performance_payment[p])
            if settlement.penalty[p] > 0:
                shell.recorder.add("ledger", time=t, participant=vpp, counterparty="iso",
                                   item="penalty", energy_kwh=0.0, amount=-settlement.penalty[p])
