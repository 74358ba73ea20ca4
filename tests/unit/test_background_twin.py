"""The top-down twin run ahead in a child process: the in-process twin's values bit for bit, failures named, and
the child never outlives its federate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from federates.common.errors import HarmonyError
from federates.common.timebase import Phase, schedule
from federates.prosumer.fleet import ProsumerFleet
from federates.prosumer.twin import BackgroundTwin
from tests.unit.test_fleet import LOC, START, TARIFF, _prosumers

PHASES = {Phase.DISPATCH, Phase.L1_BID, Phase.L1_COMMIT}
HOURS = 6


def _planned_at(step) -> float:
    return step.tick_start_s + 3.0


def _fleet() -> ProsumerFleet:
    return ProsumerFleet(_prosumers(), TARIFF, LOC, START, n_steps=HOURS * 12, seed=11)


def _in_process(fleet: ProsumerFleet) -> list[tuple[list[float], list[float]]]:
    """The twin driven in this process as the federate drove it before: plan slot 0, then per step."""
    twin = fleet.topdown_twin()
    twin.plan(0.0, 0)
    out = []
    for step in schedule(PHASES, HOURS * 3600):
        if step.phase == Phase.DISPATCH:
            records = twin.dispatch(step.time_s, {})
            out.append(([r.grid_kw for r in records], [r.soc_kwh for r in records]))
        elif step.phase == Phase.L1_BID:
            twin.plan(_planned_at(step), step.l1_slot)
    return out


def test_the_background_twin_gives_the_in_process_twin_bit_for_bit_while_the_fleet_plans():
    want = _in_process(_fleet())
    fleet = _fleet()
    with BackgroundTwin(fleet, schedule(PHASES, HOURS * 3600), _planned_at) as twin:
        fleet.plan(0.0, 0)  # the market fleet goes on in the parent; the twin's state is the child's own
        got = [twin.interval(t) for t in twin.times_s]
    assert len(got) == len(want) == HOURS * 12
    for (g_grid, g_soc), (w_grid, w_soc) in zip(got, want, strict=True):
        assert g_grid.tolist() == w_grid and g_soc.tolist() == w_soc
    assert any(abs(x) > 0 for g, _ in want for x in g) and any(s > 0 for _, s in want for s in s)


def test_a_failing_twin_fails_with_its_traceback():
    fleet = _fleet()
    fleet.plan(0.0, 0)  # too late to make a twin: the child's topdown_twin raises
    with BackgroundTwin(fleet, schedule(PHASES, 3600), _planned_at) as twin, \
            pytest.raises(HarmonyError, match=r"(?s)top-down twin failed.*before the fleet plans"):
        twin.interval(0)


def test_a_killed_twin_is_named_with_its_exit_code():
    fleet = _fleet()
    with BackgroundTwin(fleet, schedule(PHASES, HOURS * 3600), _planned_at) as twin:
        os.kill(twin._proc.pid, signal.SIGKILL)
        with pytest.raises(HarmonyError, match=r"twin process ended \(exit code -9\)"):
            twin.interval(twin.times_s[-1])


CHILD = textwrap.dedent("""
    import sys, time
    from federates.common.timebase import schedule
    from federates.prosumer.twin import BackgroundTwin
    from tests.unit.test_background_twin import PHASES, _planned_at
    from tests.unit.test_fleet import LOC, START, TARIFF, _prosumers
    from federates.prosumer.fleet import ProsumerFleet
    days = 30
    fleet = ProsumerFleet(_prosumers() * 1, TARIFF, LOC, START, n_steps=days * 288, seed=1)
    twin = BackgroundTwin(fleet, schedule(PHASES, days * 86400), _planned_at)
    print(twin._proc.pid, flush=True)
    time.sleep(60)
""")


def test_the_twin_never_outlives_its_federate():
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        assert _alive(child)  # a month of planning: still at work when its parent dies
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        proc.kill()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
