"""The pre-launch check's placements are handed to the build that follows it: each feeder is compiled once per
`harmony run`, and the build is the same as one that placed everything itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from federates.common.config import load_scenario
from federates.feeder import model as feeder_model
from runner import build as builder
from runner.preflight import preflight

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """The master of every FeederModel made (the real class, its constructor recorded)."""
    made: list[str] = []
    real = feeder_model.FeederModel.__init__

    def recorded(self, master, *args, **kwargs):
        made.append(str(master))
        real(self, master, *args, **kwargs)

    monkeypatch.setattr(feeder_model.FeederModel, "__init__", recorded)
    monkeypatch.setattr(builder, "_HANDED_OVER", {})
    return made


def scenario(tmp_path: Path):
    """The default scenario on a copy of its feeders (so a test may edit them), two hours."""
    for name in ("lv_suburb", "lv_rural"):
        shutil.copytree(REPO / "feeders" / name, tmp_path / name)
    return load_scenario(REPO / "configs" / "scenarios" / "default.yaml",
                         [f"feeders.0.master={tmp_path / 'lv_suburb' / 'Master.dss'}",
                          f"feeders.1.master={tmp_path / 'lv_rural' / 'Master.dss'}", "hours=2"])


def configs_of(out: Path) -> dict[str, str]:
    return {p.name: p.read_text().replace(str(out), "OUT") for p in sorted((out / "federates").glob("*.json"))}


def test_the_build_after_the_check_compiles_no_feeder_again_and_writes_the_same(tmp_path, compiles):
    sc = scenario(tmp_path)
    assert preflight(sc) == []
    assert len(compiles) == 2
    _, _, placed = builder.build(sc, tmp_path / "after_check", broker_port=23456, broker_key=False)
    assert len(compiles) == 2  # the check's placements
    _, _, again = builder.build(sc, tmp_path / "alone", broker_port=23456, broker_key=False)
    assert len(compiles) == 4  # handed over once: a second build places again
    assert configs_of(tmp_path / "after_check") == configs_of(tmp_path / "alone")
    assert [p.prosumers for p in placed] == [p.prosumers for p in again]


def test_a_feeder_file_changed_after_the_check_is_placed_again(tmp_path, compiles):
    sc = scenario(tmp_path)
    assert preflight(sc) == []
    master = tmp_path / "lv_rural" / "Master.dss"
    master.write_text(master.read_text() + "\n! edited after the check\n")
    builder.build(sc, tmp_path / "out", broker_port=23456, broker_key=False)
    assert compiles[2:] == [str(sc.feeders[1].master)]  # the suburb's placement was taken, the rural feeder compiled


def test_another_seed_is_placed_again(tmp_path, compiles):
    sc = scenario(tmp_path)
    assert preflight(sc) == []
    builder.build(sc.model_copy(update={"seed": sc.seed + 1}), tmp_path / "out", broker_port=23456,
                  broker_key=False)
    assert len(compiles) == 4
