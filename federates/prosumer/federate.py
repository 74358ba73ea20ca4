"""Prosumer federate: hosts a fleet of behind-the-meter microgrids of one feeder.

Every 5 minutes (DISPATCH): read the VPP's setpoints and reserve commitments -> dispatch devices -> record ->
publish net injections. Every 30 minutes (L1_BID): plan and post P2P orders for the slot 30 minutes ahead;
(L1_COMMIT): take the cleared positions as commitments, re-plan, post plans and flexibility to the VPP.
"""

from __future__ import annotations

import contextlib

import numpy as np

from federates.common.config import ANCILLARY_MODES, P2P_MODES
from federates.common.helics_shell import Shell
from federates.common.messages import (
    Injections,
    MemberPlan,
    OrderBook,
    OrderMsg,
    Plans,
    Positions,
    ReserveCommitments,
    Setpoints,
)
from federates.common.timebase import TICK_S, Phase, phases_of, schedule
from federates.common.wiring import ProsumerFederate, load_federate_config
from federates.prosumer.fleet import Bid, ProsumerFleet, Setpoint
from federates.prosumer.twin import BackgroundTwin


def main(config_path: str) -> None:
    cfg: ProsumerFederate = load_federate_config(config_path, ProsumerFederate)
    rt = cfg.runtime
    p2p = rt.mode in P2P_MODES
    fleet = ProsumerFleet(cfg.prosumers, cfg.tariff, cfg.location, rt.start, n_steps=rt.duration_s // TICK_S,
                          seed=rt.seed, p2p_enabled=p2p, vpp_enabled=rt.mode in ANCILLARY_MODES)
    phases = phases_of("prosumer", rt.mode)
    # in the market modes a top-down twin of the same prosumers runs alongside, ahead of the federation in a
    # low-priority child process: its bill is each member's reference for the VPP's guarantee
    # (runner.ledger.guarantee_entries)
    twin = BackgroundTwin(fleet, schedule(phases, rt.duration_s), _planned_at) if p2p else None
    pending = fleet.plan(0.0, 0)  # slot 0 has no gate: its plan goes to the VPP at the first gate (L1_BID)
    me, vpp = rt.name, cfg.vpp
    mine = set(fleet.names)
    setpoints: dict[str, Setpoint] = {}
    with Shell(rt) as shell, twin or contextlib.nullcontext():
        for step in shell.steps(phases):
            if step.phase == Phase.DISPATCH:
                setpoints = _read_vpp(shell, fleet, vpp, mine) if p2p else {}
                cols = fleet.dispatch_columns(step.time_s, setpoints)
                topdown = (twin.interval(step.time_s) if twin is not None else
                           (cols["grid_kw"], cols["soc_kwh"]) if rt.mode == "topdown" else None)
                _record(shell, cfg.feeder, fleet.names, cols, topdown)
                up, down = fleet.headroom_arrays(cols["battery_kw"])
                shell.publish(f"{me}/injections", Injections(
                    time_s=step.time_s, interval=step.interval, p_kw=_by_name(fleet.names, cols["grid_kw"]),
                    up_kw=_by_name(fleet.names, up), down_kw=_by_name(fleet.names, down)), target=step.interval)
            elif step.phase == Phase.L1_BID:
                bids = fleet.plan(_planned_at(step), step.l1_slot)
                if p2p:
                    shell.publish(f"{me}/orders", _order_book(step, me, bids), target=step.l1_slot)
                    if pending:  # the first gate: slot 0's plan reaches the VPP before its first Layer III order
                        shell.publish(f"{me}/plans", _plans(step, pending, slot=0), target=0)
                        pending = []
            else:  # L1_COMMIT
                positions = shell.read(f"{vpp}/positions/{me}", Positions)
                if positions is not None and positions.slot == step.l1_slot:
                    fleet.commit_p2p(step.l1_slot, {p: v for p, v in positions.net_kwh.items() if p in mine})
                bids = fleet.plan(_planned_at(step), step.l1_slot)
                shell.publish(f"{me}/plans", _plans(step, bids), target=step.l1_slot)
            shell.fallbacks = fleet.fallbacks


PLANNED_AT_S = {Phase.L1_BID: 3, Phase.L1_COMMIT: 5}
"""The second of the gate's tick a HEMS decision is made at, as the model sees it (it projects the state of charge
from then to the slot's start). These were the phases' seconds before several phases came to share a second;
kept apart from when HELICS grants the phase so that merging phases changes no result."""


def _planned_at(step) -> float:
    return step.tick_start_s + PLANNED_AT_S[step.phase]


def _read_vpp(shell: Shell, fleet: ProsumerFleet, vpp: str, mine: set[str]) -> dict[str, Setpoint]:
    key = f"{vpp}/reserve/{shell.runtime.name}"
    reserve = shell.read(key, ReserveCommitments) if key in shell.subs else None
    if reserve is not None:
        fleet.commit_reserve(reserve.slot, {p: v for p, v in reserve.up_kw.items() if p in mine},
                            {p: v for p, v in reserve.down_kw.items() if p in mine})
    msg = shell.read(f"{vpp}/setpoints/{shell.runtime.name}", Setpoints)
    if msg is None:
        return {}
    return {p: Setpoint(delta_p_kw=s.delta_p_kw, max_export_kw=s.max_export_kw, max_import_kw=s.max_import_kw)
            for p, s in msg.setpoints.items() if p in mine}


def _order_book(step, sender: str, bids: list[Bid]) -> OrderBook:
    orders = []
    for b in bids:
        if b.buy_kwh > 1e-6:
            orders.append(OrderMsg(order_id=f"{b.prosumer}:{b.slot}:buy", participant=b.prosumer, side="buy",
                                   energy_kwh=b.buy_kwh, limit_price_per_kwh=b.buy_limit_price_per_kwh))
        if b.sell_kwh > 1e-6:
            orders.append(OrderMsg(order_id=f"{b.prosumer}:{b.slot}:sell", participant=b.prosumer, side="sell",
                                   energy_kwh=b.sell_kwh, limit_price_per_kwh=b.sell_limit_price_per_kwh))
    return OrderBook(time_s=step.time_s, slot=step.l1_slot, sender=sender, orders=orders)


def _plans(step, bids: list[Bid], slot: int | None = None) -> Plans:
    return Plans(time_s=step.time_s, slot=step.l1_slot if slot is None else slot, plans=[
        MemberPlan(member=b.prosumer, slot=b.slot, planned_p_kw=b.planned_p_kw, up_kw=b.flex_up_kw,
                   down_kw=b.flex_down_kw, price_per_kwh=b.flex_price_per_kwh) for b in bids])


def _by_name(names: list[str], values: np.ndarray) -> dict[str, float]:
    return dict(zip(names, values.tolist(), strict=True))


_STEP_COLUMNS = ("pv_kw", "load_kw", "flex_kw", "battery_kw", "soc_kwh", "grid_kw", "curtailed_kw", "p2p_commit_kw",
                 "reserve_up_kw", "reserve_down_kw", "delta_p_kw", "unmet_flex_kwh")


def _record(shell: Shell, feeder: str, names: list[str], cols: dict, topdown: tuple | None) -> None:
    """One ``prosumer_steps`` row per prosumer from the fleet's dispatch columns; ``topdown``: (grid_kw, soc_kwh)
    per prosumer for the same interval under top-down (the twin's in the market modes, the prosumers' own in
    topdown, None in netmetering: the top-down columns stay empty)."""
    n = len(names)
    nan = [float("nan")] * n
    td = (nan, nan) if topdown is None else (np.asarray(topdown[0]).tolist(), np.asarray(topdown[1]).tolist())
    values = [cols[c].tolist() for c in _STEP_COLUMNS]
    shell.recorder.add_rows("prosumer_steps", list(zip([shell.time_s] * n, names, [feeder] * n, *values, *td,
                                                       strict=True)))
