from pathlib import Path

import pytest

from federates.common.errors import ConfigError
from federates.feeder.model import FeederModel

SUBURB = Path(__file__).resolve().parents[2] / "feeders" / "lv_suburb" / "Master.dss"


def test_power_over_the_tie_changes_the_head_power_one_for_one():
    m = FeederModel(SUBURB, injectors=["lv_busbar"])
    placement = m.place_prosumers(5, seed=1)
    assert m.injectors == ["harmony_injector_0"] and "harmony_injector_0" not in placement.loads
    base = m.solve()
    m.set_injections({"harmony_injector_0": 40.0})  # 40 kW arrive over the tie
    fed = m.solve()
    m.set_injections({"harmony_injector_0": -40.0})  # 40 kW leave over the tie
    drawn = m.solve()
    assert fed.converged and drawn.converged
    # the tie sits on the LV busbar: the head supplies 40 kW less/more, up to the transformer's loss change
    assert base.p_head_kw - fed.p_head_kw == pytest.approx(40.0, rel=0.02)
    assert drawn.p_head_kw - base.p_head_kw == pytest.approx(40.0, rel=0.02)


def test_an_unknown_tie_bus_is_refused_with_the_buses_it_has():
    with pytest.raises(ConfigError, match="not a bus of Master.dss; buses include"):
        FeederModel(SUBURB, injectors=["nowhere"])
