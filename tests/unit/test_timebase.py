import pytest

from federates.common.timebase import CADENCE, TICK_S, Phase, Step, schedule


def test_every_tick_phase_runs_once_per_five_minutes():
    steps = list(schedule({Phase.DISPATCH, Phase.PHYSICS}, 1800))
    assert [s.time_s for s in steps] == [0, 1, 300, 301, 600, 601, 900, 901, 1200, 1201, 1500, 1501]


def test_layer1_gate_bids_for_the_slot_thirty_minutes_ahead():
    steps = list(schedule({Phase.L1_BID, Phase.L1_CLEAR}, 3 * 1800))
    # the gate for the last slot (starting at 5400 s = end) is skipped: nobody would use it
    assert [(s.time_s, s.l1_slot) for s in steps] == [(0, 1), (1, 1), (1800, 2), (1801, 2)]


def test_layer2_and_layer3_targets():
    offers = list(schedule({Phase.L2_OFFER}, 1800))
    assert [(s.time_s, s.l2_slot) for s in offers] == [(6, 1)]
    orders = list(schedule({Phase.L3_ORDER}, 900))
    assert [(s.time_s, s.interval + 1) for s in orders] == [(2, 1), (302, 2)]


# (cause, effect): a value published (or state updated) in the first phase is read (or used) in the second, in
# the same 5-minute tick -- the table of docs/timing.md
CAUSAL = [
    (Phase.DISPATCH, Phase.PHYSICS),     # injections of interval n -> power flow of n
    (Phase.PHYSICS, Phase.MEASURE),      # feeder state of n -> ISO settlement of n, VPP caps
    (Phase.MEASURE, Phase.L2_OFFER),     # metered headroom and caps -> what the VPP can offer
    (Phase.MEASURE, Phase.L3_ORDER),     # drift and headroom -> Layer III orders for n + 1
    (Phase.MEASURE, Phase.SETPOINT),     # corrective caps measured in n -> setpoints for n + 1
    (Phase.L1_BID, Phase.L1_CLEAR),      # orders -> Layer I clearing
    (Phase.L1_CLEAR, Phase.L1_COMMIT),   # positions -> commitments, plans
    (Phase.L1_COMMIT, Phase.L2_OFFER),   # plans and flexibility -> ancillary offers
    (Phase.L2_OFFER, Phase.L2_CLEAR),    # offers -> ISO clearing
    (Phase.L2_CLEAR, Phase.L2_AWARD),    # awards -> members' reserve
    (Phase.L3_SIGNAL, Phase.L3_ORDER),   # dispatch signal for n + 1 -> Layer III orders for n + 1
    (Phase.L3_ORDER, Phase.L3_CLEAR),    # Layer III orders -> Layer III clearing
    (Phase.L3_CLEAR, Phase.SETPOINT),    # Layer III results for n + 1 -> setpoints for n + 1
]


def test_steps_come_in_time_order_and_fit_in_one_tick():
    times = [s.time_s for s in schedule(set(Phase), 3600)]
    assert times == sorted(times)
    assert Phase.DISPATCH.offset_s == 0 and max(p.offset_s for p in Phase) < TICK_S


@pytest.mark.parametrize("cause, effect", CAUSAL, ids=[f"{c.name}->{e.name}" for c, e in CAUSAL])
def test_every_cause_runs_before_its_effect_in_the_same_tick(cause, effect):
    assert cause < effect
    steps = list(schedule(set(Phase), 3 * 1800))
    for e in (s for s in steps if s.phase == effect):
        before = [s for s in steps if s.phase == cause and s.tick_start_s == e.tick_start_s]
        if CADENCE[cause] <= CADENCE[effect]:  # the cause runs at least as often: it must be there
            assert before, f"{effect.name} at {e.time_s} s has no {cause.name} in its tick"
        assert all((b.time_s, b.phase) < (e.time_s, e.phase) for b in before)


def test_setpoints_for_the_next_interval_come_before_its_dispatch():
    """SETPOINT of tick n prepares interval n + 1, dispatched at the next tick: no lag, no gap."""
    steps = list(schedule({Phase.SETPOINT, Phase.DISPATCH}, 1800))
    setpoints = [s for s in steps if s.phase == Phase.SETPOINT]
    dispatches = {s.interval: s.time_s for s in steps if s.phase == Phase.DISPATCH}
    assert len(setpoints) == 5  # the last tick prepares nothing
    for s in setpoints:
        assert s.time_s < dispatches[s.interval + 1] == s.tick_start_s + TICK_S


def test_step_recovers_its_clocks():
    step = Step(2 * 1800 + 900 + 6, Phase.L2_OFFER)
    assert (step.tick_start_s, step.interval, step.l2_slot) == (4500, 15, 6)


def test_local_hour_wraps_at_midnight():
    from datetime import datetime

    import numpy as np

    from federates.common.timebase import local_hour

    start = datetime(2024, 6, 21, 22, 30)
    assert local_hour(start, 0) == 22.5 and local_hour(start, 5400) == 0.0
    assert list(local_hour(start, np.array([1800, 3600]))) == [23.0, 23.5]
