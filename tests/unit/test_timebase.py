from federates.common.timebase import Phase, Step, schedule


def test_every_tick_phase_runs_once_per_five_minutes():
    steps = list(schedule({Phase.DISPATCH, Phase.PHYSICS}, 1800))
    assert [s.time_s for s in steps] == [0, 1, 300, 301, 600, 601, 900, 901, 1200, 1201, 1500, 1501]


def test_layer1_gate_bids_for_the_slot_thirty_minutes_ahead():
    steps = list(schedule({Phase.L1_BID, Phase.L1_CLEAR}, 3 * 1800))
    # the gate for the last slot (starting at 5400 s = end) is skipped: nobody would use it
    assert [(s.time_s, s.l1_slot) for s in steps] == [(3, 1), (4, 1), (1803, 2), (1804, 2)]


def test_layer2_and_layer3_targets():
    offers = list(schedule({Phase.L2_OFFER}, 1800))
    assert [(s.time_s, s.l2_slot) for s in offers] == [(6, 1)]
    orders = list(schedule({Phase.L3_ORDER}, 900))
    assert [(s.time_s, s.interval + 1) for s in orders] == [(10, 1), (310, 2)]


def test_phases_are_strictly_ordered_within_a_tick():
    times = [s.time_s for s in schedule(set(Phase), 3600)]
    assert times == sorted(times) and len(times) == len(set(times))


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
