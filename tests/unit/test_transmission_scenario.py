"""The scenario's transmission field: configs/scenarios/td.yaml is the default scenario plus a transmission system,
the field's names and counts, and the PYPOWER cases the schema offers are those the model loads."""

from __future__ import annotations

import typing
from pathlib import Path

from federates.common.config import TransmissionCase, load_scenario
from federates.transmission.model import CASES

SCENARIOS = Path(__file__).resolve().parents[2] / "configs" / "scenarios"


def test_td_is_the_default_scenario_over_case39():
    td, default = load_scenario(SCENARIOS / "td.yaml"), load_scenario(SCENARIOS / "default.yaml")
    assert td.transmission is not None and default.transmission is None
    assert td.model_dump(exclude={"name", "transmission"}) == default.model_dump(exclude={"name", "transmission"})
    assert td.transmission.case == "case39" and td.transmission.bus_of == {"suburb": 20, "rural": 20}
    assert td.transmission.copies("suburb") == td.transmission.copies("rural") == 1000


def test_copies_per_feeder_or_for_all():
    small = Path(__file__).resolve().parents[2] / "tests" / "e2e" / "small.yaml"
    one = load_scenario(small, ["transmission={case: case9, bus_of: {suburb: 5, rural: 7}, feeders_per_bus: 7}"])
    each = load_scenario(small, ["transmission={case: case9, bus_of: {suburb: 5, rural: 7}, "
                                 "feeders_per_bus: {suburb: 2, rural: 9}}"])
    assert (one.transmission.copies("suburb"), one.transmission.copies("rural")) == (7, 7)
    assert (each.transmission.copies("suburb"), each.transmission.copies("rural")) == (2, 9)
    assert load_scenario(small).transmission is None  # absent: no transmission federate


def test_the_schema_offers_exactly_the_cases_the_model_loads():
    assert typing.get_args(TransmissionCase) == CASES


def test_the_launcher_expects_one_transmission_step_per_tick_right_after_the_feeders():
    from federates.common.timebase import Phase
    from runner.launch import expected_steps, phases_of

    assert phases_of("transmission", "full") == {Phase.MEASURE} and Phase.MEASURE.offset_s == Phase.PHYSICS.offset_s + 1
    assert expected_steps("transmission", "topdown", 3600) == 12  # 12 ticks in an hour, one solve each
