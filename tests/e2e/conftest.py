"""Short real runs shared by the end-to-end modules that only read their results: tests/e2e/small.yaml, one
hour of configs/scenarios/three_vpps.yaml (where Layer III trades), and small.yaml over a transmission system (T&D).

Both record every published payload (``HARMONY_RECORD_PAYLOADS=1``, table ``payloads``), so that
``test_timing.py`` can compare what was published for an interval or slot with what each federate applied.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from federates.common.config import load_scenario
from federates.common.helics_shell import RECORD_PAYLOADS_ENV
from runner.cli import execute

REPO = Path(__file__).resolve().parents[2]
SMALL = Path(__file__).with_name("small.yaml")
THREE_VPPS = REPO / "configs" / "scenarios" / "three_vpps.yaml"


def _run(scenario, run_dir: Path) -> tuple[Path, dict]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(RECORD_PAYLOADS_ENV, "1")
        figures = execute(scenario, run_dir, show_progress=False)
    return run_dir, figures


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run folder, kpis) of tests/e2e/small.yaml: 2 feeders, 12 prosumers, 1.5 h, mode full."""
    return _run(load_scenario(SMALL), tmp_path_factory.mktemp("e2e") / "small")


@pytest.fixture(scope="session")
def three_vpps_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run folder, kpis) of the first hour of three_vpps.yaml: 3 feeders, 45 prosumers, Layer III trades."""
    return _run(load_scenario(THREE_VPPS, ["hours=1"]), tmp_path_factory.mktemp("e2e") / "three_vpps")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """One feeder, four prosumers in two federates, top-down, a quarter of an hour: the smallest real federation
    (three federates + broker). Tests that need it longer pass ``--hours``."""
    path = tmp_path_factory.mktemp("scenario") / "tiny.yaml"
    path.write_text(f"""name: tiny
start: "2024-06-21T10:00:00"
hours: 0.25
seed: 3
mode: topdown
feeders:
  - name: suburb
    master: {REPO / "feeders" / "lv_suburb" / "Master.dss"}
    prosumers: {{placement: 4, pv_share: 0.5, battery_share: 1.0, battery_kwh: [12.0, 13.5]}}
federation: {{prosumers_per_federate: 2}}
""")
    return path


TD = ["transmission={case: case39, bus_of: {suburb: 4, rural: 20}, feeders_per_bus: {suburb: 1000, rural: 300}}"]


@pytest.fixture(scope="session")
def td_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run folder, kpis) of tests/e2e/small.yaml over the IEEE 39-bus system (suburb at bus 4 x 1000, rural at
    bus 20 x 300): the same prosumers, markets and span as ``small_run``, plus the transmission federate."""
    return _run(load_scenario(SMALL, TD), tmp_path_factory.mktemp("e2e") / "td")
