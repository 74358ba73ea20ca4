"""Automatic sizing of the prosumer federates (runner.build): one per core, bounded by feeders and memory."""

from __future__ import annotations

from runner.build import (
    FEDERATE_PROCESS_BYTES,
    MIN_PROSUMERS_PER_FEDERATE,
    PROSUMER_BYTES,
    auto_prosumer_federates,
)

GB = 2**30


def test_one_prosumer_federate_per_core_when_there_is_work_for_it():
    assert auto_prosumer_federates(1177, 1, cores=2, memory_bytes=20 * GB) == 2
    assert auto_prosumer_federates(1177, 1, cores=8, memory_bytes=20 * GB) == 8


def test_few_prosumers_are_not_spread_thin_but_every_feeder_gets_one():
    assert auto_prosumer_federates(MIN_PROSUMERS_PER_FEDERATE, 1, cores=16, memory_bytes=None) == 1
    assert auto_prosumer_federates(40, 2, cores=16, memory_bytes=None) == 2
    assert auto_prosumer_federates(5, 3, cores=1, memory_bytes=None) == 3


def test_memory_caps_the_number_of_processes():
    memory = 2 * (1000 * PROSUMER_BYTES + 3 * FEDERATE_PROCESS_BYTES)  # half of it fits three processes
    assert auto_prosumer_federates(1000, 1, cores=32, memory_bytes=memory) == 3
