import pytest

from federates.common.timebase import (
    CADENCE,
    LOOKING_BACK,
    OFFSET_S,
    TICK_S,
    Phase,
    Step,
    grant_times,
    schedule,
)
from runner.launch import phases_of

DAY_S = 24 * 3600


def test_every_tick_phase_runs_once_per_five_minutes():
    steps = list(schedule({Phase.DISPATCH, Phase.PHYSICS}, 1800))
    assert [s.time_s for s in steps] == [0, 1, 300, 301, 600, 601, 900, 901, 1200, 1201, 1500, 1501]


def test_layer1_gate_bids_for_the_slot_thirty_minutes_ahead():
    steps = list(schedule({Phase.L1_BID, Phase.L1_CLEAR}, 3 * 1800))
    # the gate for the last slot (starting at 5400 s = end) is skipped: nobody would use it
    assert [(s.time_s, s.l1_slot) for s in steps] == [(0, 1), (1, 1), (1800, 2), (1801, 2)]


def test_layer2_and_layer3_targets():
    offers = list(schedule({Phase.L2_OFFER}, 1800))
    assert [(s.time_s, s.l2_slot) for s in offers] == [(3, 1)]
    orders = list(schedule({Phase.L3_ORDER}, 900))
    assert [(s.time_s, s.interval + 1) for s in orders] == [(2, 1), (302, 2)]


def test_settlement_looks_back_one_tick_and_reaches_the_last_interval():
    """SETTLE at tick n settles interval n - 1: it starts at the second tick and runs once at t = duration."""
    steps = list(schedule({Phase.SETTLE, Phase.L3_SIGNAL}, 900))
    assert [(s.time_s, s.phase.name) for s in steps] == [
        (0, "L3_SIGNAL"), (300, "SETTLE"), (300, "L3_SIGNAL"), (600, "SETTLE"), (900, "SETTLE")]
    settled = [s.interval - 1 for s in steps if s.phase == Phase.SETTLE]
    assert settled == [0, 1, 2]
    assert LOOKING_BACK == {Phase.SETTLE}


# Who reads what (docs/timing.md). A value crosses HELICS from the phase that publishes it to the phase that reads
# it, ``lag`` ticks later (0: the same tick); the reader must be granted a LATER second than the writer, never the
# same one (HELICS may grant a reader a second before the writer has published in it).
VALUES = [
    (Phase.DISPATCH, Phase.PHYSICS, 0),     # injections of interval n -> power flow of n
    (Phase.DISPATCH, Phase.MEASURE, 0),     # injections (meter, headroom) -> the VPP's corrective caps
    (Phase.PHYSICS, Phase.MEASURE, 0),      # feeder state of n -> VPP caps, drift (and the transmission federate)
    (Phase.PHYSICS, Phase.SETTLE, 1),       # feeder state of n -> ISO settlement of n at the next tick
    (Phase.L3_SIGNAL, Phase.L3_ORDER, 0),   # dispatch signal for n + 1 -> Layer III orders for n + 1
    (Phase.L3_ORDER, Phase.L3_CLEAR, 0),    # Layer III orders -> Layer III clearing
    (Phase.L3_CLEAR, Phase.SETPOINT, 0),    # Layer III results for n + 1 -> setpoints for n + 1
    (Phase.L3_CLEAR, Phase.SETTLE, 1),      # Layer III credit for n + 1 -> read by the ISO at the next tick
    (Phase.L3_CLEAR, Phase.PHYSICS, 1),     # (tie) credit for n + 1 flows over the tie in the power flow of n + 1
    (Phase.L1_BID, Phase.L1_CLEAR, 0),      # orders -> Layer I clearing
    (Phase.L1_BID, Phase.L3_ORDER, 0),      # (first gate) slot 0's plans -> Layer III orders for interval 1
    (Phase.L1_CLEAR, Phase.L1_COMMIT, 0),   # positions -> commitments, plans
    (Phase.L1_COMMIT, Phase.L2_OFFER, 0),   # plans and flexibility -> ancillary offers
    (Phase.L2_OFFER, Phase.L2_CLEAR, 0),    # offers -> ISO clearing
    (Phase.L2_CLEAR, Phase.L2_AWARD, 0),    # awards -> members' reserve
    (Phase.SETPOINT, Phase.DISPATCH, 1),    # setpoints for n + 1 -> dispatch of n + 1
    (Phase.SETPOINT, Phase.PHYSICS, 1),     # community battery power for n + 1 -> power flow of n + 1
    (Phase.L2_AWARD, Phase.DISPATCH, 1),    # members' reserve for slot q + 1 -> dispatch from the next tick on
]

# What one federate carries from one of its phases to another of the same tick (its own state): the cause must
# run first, at an earlier second or earlier in the same grant.
STATES = [
    (Phase.DISPATCH, Phase.L1_BID),         # prosumers: state of charge after dispatch -> the plan behind the bids
    (Phase.L1_BID, Phase.L1_COMMIT),        # prosumers: bids -> re-plan with the commitments
    (Phase.MEASURE, Phase.L3_ORDER),        # VPP: drift and headroom -> Layer III orders for n + 1
    (Phase.MEASURE, Phase.L2_OFFER),        # VPP: metered headroom and caps -> what it can offer
    (Phase.MEASURE, Phase.SETPOINT),        # VPP: corrective caps measured in n -> setpoints for n + 1
    (Phase.L3_ORDER, Phase.SETPOINT),       # VPP: what the ISO requires for n + 1 -> members' target
    (Phase.L2_OFFER, Phase.L2_AWARD),       # VPP: who backed the offer -> how the award is split
    (Phase.L2_OFFER, Phase.SETPOINT),       # VPP: the battery's offer sees its charge before this tick's dispatch
    (Phase.L2_AWARD, Phase.SETPOINT),       # VPP: the order of today's code, kept
    (Phase.SETTLE, Phase.L2_CLEAR),         # ISO: settlement, then the next clearing
]
WHO = {kind: phases_of(kind, "full") for kind in ("prosumer", "feeder", "vpp", "iso", "vpp_market")}


def _steps(duration_s: int = 3 * 1800) -> list[Step]:
    return list(schedule(set(Phase), duration_s))


@pytest.mark.parametrize("cause, effect, lag", VALUES, ids=[f"{c.name}->{e.name}" for c, e, _ in VALUES])
def test_every_value_is_read_at_a_later_second_than_it_is_published(cause, effect, lag):
    owners = [k for k, phases in WHO.items() if cause in phases], [k for k, phases in WHO.items() if effect in phases]
    assert owners[0] and owners[1] and not set(owners[0]) & set(owners[1]), "a value crosses between federates"
    steps = _steps()
    checked = 0
    for e in (s for s in steps if s.phase == effect):
        before = [s for s in steps if s.phase == cause and s.tick_start_s == e.tick_start_s - lag * TICK_S]
        if CADENCE[cause] <= CADENCE[effect] and lag == 0:  # the cause runs at least as often: it must be there
            assert before, f"{effect.name} at {e.time_s} s has no {cause.name} in its tick"
        assert all(b.time_s < e.time_s for b in before), (cause.name, effect.name, e.time_s)
        checked += len(before)
    assert checked


@pytest.mark.parametrize("cause, effect", STATES, ids=[f"{c.name}->{e.name}" for c, e in STATES])
def test_every_federate_runs_its_own_phases_in_causal_order(cause, effect):
    assert any(cause in p and effect in p for p in WHO.values()), "state stays inside one federate"
    steps = _steps()
    for e in (s for s in steps if s.phase == effect):
        before = [s for s in steps if s.phase == cause and s.tick_start_s == e.tick_start_s]
        assert all((b.time_s, b.phase) < (e.time_s, e.phase) for b in before)
    assert (OFFSET_S[cause], cause) < (OFFSET_S[effect], effect)


def test_a_phase_after_physics_reads_the_feeder_state_in_the_same_tick():
    """MEASURE is the phase right after the power flow (the transmission federate acts there too)."""
    assert Phase.PHYSICS.offset_s < Phase.MEASURE.offset_s < TICK_S


def test_steps_come_in_time_order_and_fit_in_one_tick():
    times = [s.time_s for s in schedule(set(Phase), 3600)]
    assert times == sorted(times)
    assert Phase.DISPATCH.offset_s == 0 and max(p.offset_s for p in Phase) < TICK_S


def test_time_grants_of_a_day():
    """One grant per second a federate acts at (its phases at one second share it), and how many seconds the
    whole federation steps through: docs/timing.md."""
    grants = {kind: len(grant_times(phases, DAY_S)) for kind, phases in WHO.items()}
    # 288 ticks; a phase preparing what starts at the end is skipped (287 Layer III ticks, 95 Layer II and 47
    # Layer I gates); the ISO's last settlement is at t = 24 h
    assert grants == {"prosumer": 288 + 47, "feeder": 288, "vpp": 288 + 287 + 47 + 95, "iso": 288 + 1 + 95,
                      "vpp_market": 287}
    federation = {s.time_s for s in schedule(set(Phase), DAY_S)}
    assert len(federation) == 3 * 288 + 2 * 287 + 95 + 1  # +0, +1, +2; +3, +5; +4 (Layer II); t = 24 h


def test_setpoints_for_the_next_interval_come_before_its_dispatch():
    """SETPOINT of tick n prepares interval n + 1, dispatched at the next tick: no lag, no gap."""
    steps = list(schedule({Phase.SETPOINT, Phase.DISPATCH}, 1800))
    setpoints = [s for s in steps if s.phase == Phase.SETPOINT]
    dispatches = {s.interval: s.time_s for s in steps if s.phase == Phase.DISPATCH}
    assert len(setpoints) == 5  # the last tick prepares nothing
    for s in setpoints:
        assert s.time_s < dispatches[s.interval + 1] == s.tick_start_s + TICK_S


def test_step_recovers_its_clocks():
    step = Step(2 * 1800 + 900 + 3, Phase.L2_OFFER)
    assert (step.tick_start_s, step.interval, step.l2_slot) == (4500, 15, 6)


def test_local_hour_wraps_at_midnight():
    from datetime import datetime

    import numpy as np

    from federates.common.timebase import local_hour

    start = datetime(2024, 6, 21, 22, 30)
    assert local_hour(start, 0) == 22.5 and local_hour(start, 5400) == 0.0
    assert list(local_hour(start, np.array([1800, 3600]))) == [23.0, 23.5]
