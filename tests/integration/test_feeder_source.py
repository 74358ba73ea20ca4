"""The feeder's source voltage, which a transmission power flow sets (FeederModel.source_pu / set_source_pu), on every
feeder master the project ships and the shared IEEE ones (IEEE 8500 sets its source with ``~ pu=1.05``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from federates.common.errors import ConfigError
from federates.feeder.model import FeederModel

REPO = Path(__file__).resolve().parents[2]

OURS = {"lv_suburb": 1.02, "lv_rural": 1.03, "ieee13": 1.0, "test_delta_lateral": 1.0}
SHARED = {"8500-Node/Master.dss": 1.05, "123Bus/IEEE123Master.dss": 1.0, "LVTestCase/Master.dss": 1.05}


def _master(name: str, shared_file) -> Path:
    return REPO / "feeders" / name / "Master.dss" if name in OURS else shared_file(f"feeders/{name}")


REGULATED = {"ieee13", "8500-Node/Master.dss", "123Bus/IEEE123Master.dss"}  # regulators near the head


def _source_bus_pu(model: FeederModel) -> float:
    d = model._dss
    d.Circuit.SetActiveElement(f"Vsource.{model._source}")
    bus = d.CktElement.BusNames()[0].split(".")[0].lower()
    return model.node_voltages_pu()[f"{bus}.1"]


@pytest.mark.parametrize("name, configured", [*OURS.items(), *SHARED.items()])
def test_the_source_voltage_is_the_masters_and_moves_the_source_bus(name, configured, shared_file):
    model = FeederModel(_master(name, shared_file))
    assert model.source_pu == pytest.approx(configured)
    head = model.solve()
    at_head = _source_bus_pu(model)
    model.set_source_pu(configured - 0.04)
    assert model.source_pu == pytest.approx(configured - 0.04)
    lowered = model.solve()
    assert lowered.converged
    assert _source_bus_pu(model) == pytest.approx(at_head - 0.04, abs=2e-3)  # stiff or nearly stiff sources
    if name not in REGULATED:  # without a regulator every service voltage follows the source down
        assert lowered.v_max_pu < head.v_max_pu - 0.03 and lowered.v_min_pu < head.v_min_pu - 0.03
    model.close()


def test_an_absurd_source_voltage_is_refused():
    model = FeederModel(REPO / "feeders" / "lv_suburb" / "Master.dss")
    with pytest.raises(ConfigError, match="source voltage nan pu of Master.dss"):
        model.set_source_pu(float("nan"))
    with pytest.raises(ConfigError, match=r"\[0.5, 1.5\]"):
        model.set_source_pu(2.0)
    model.close()
