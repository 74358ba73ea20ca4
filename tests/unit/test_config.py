from pathlib import Path

import pytest

from federates.common.config import VppMarketConfig, apply_override, load_scenario
from federates.common.errors import ConfigError, WiringError
from federates.common.wiring import Runtime, VppMarketFederate, check_wiring

DEFAULT = Path(__file__).resolve().parents[2] / "configs" / "scenarios" / "default.yaml"


def test_default_scenario_is_valid_and_resolved():
    sc = load_scenario(DEFAULT)
    assert len(sc.feeders) >= 2 and sc.duration_s == 86400
    assert all(f.master.is_absolute() and f.master.is_file() for f in sc.feeders)
    assert sc.market_of(sc.feeders[1]).mechanism == "bilateral"


def test_overrides_by_dotted_path_are_validated_like_the_file():
    sc = load_scenario(DEFAULT, ["market.mechanism=bilateral", "feeders.0.prosumers.placement=5", "hours=1"])
    assert sc.market.mechanism == "bilateral" and sc.feeders[0].prosumers.placement == 5 and sc.hours == 1
    with pytest.raises(ConfigError, match="market.mechanism"):
        load_scenario(DEFAULT, ["market.mechanism=barter"])


def test_every_problem_is_reported_at_once_with_field_and_value():
    with pytest.raises(ConfigError) as err:
        load_scenario(DEFAULT, ["hours=0.3", "feeders.0.colour=red", "feeders.1.master=missing.dss"])
    text = str(err.value)
    assert len(err.value.problems) == 3
    assert "hours" in text and "0.3" in text
    assert "feeders.0.colour" in text and "unknown field" in text
    assert "missing.dss" in text and "relative to the scenario file" in text
    assert str(DEFAULT) in text


def test_override_syntax_errors_say_how_to_fix():
    with pytest.raises(ConfigError, match="PATH=VALUE"):
        apply_override({}, "market.mechanism")
    with pytest.raises(ConfigError, match="not an index"):
        apply_override({"feeders": [{}]}, "feeders.3.name=x")


def _market(name, pubs, subs, tmp):
    rt = Runtime(name=name, kind="vpp_market", broker_port=1, start="2024-01-01T00:00:00", duration_s=300, seed=0,
                 out_dir=tmp, publications=pubs, subscriptions=subs)
    return VppMarketFederate(runtime=rt, market=VppMarketConfig(), vpps=[])


def test_wiring_check_finds_unmatched_and_duplicated_keys(tmp_path):
    good = [_market("a", ["a/x"], ["b/y"], tmp_path), _market("b", ["b/y"], ["a/x"], tmp_path)]
    check_wiring(good)
    bad = good + [_market("c", ["a/x"], ["nobody/z"], tmp_path)]
    with pytest.raises(WiringError) as err:
        check_wiring(bad)
    assert len(err.value.problems) == 2
    assert "'a/x' is published by 2" in str(err.value) and "'nobody/z', which nobody publishes" in str(err.value)


def test_a_spot_load_standing_for_several_houses_gets_their_devices():
    from runner.population import make_prosumers

    sc = load_scenario(DEFAULT, ["feeders.0.prosumers.pv_share=1.0", "feeders.0.prosumers.battery_share=1.0"])
    one = make_prosumers(sc.feeders[0], ["a", "b"], seed=3)
    four = make_prosumers(sc.feeders[0], ["a", "b"], seed=3, houses={"b": 4})
    assert one[0] == four[0]  # same draw, one house
    assert four[1].load.daily_kwh == pytest.approx(4 * one[1].load.daily_kwh, abs=0.25)
    assert four[1].pv.kwp == pytest.approx(4 * one[1].pv.kwp, abs=0.25)
    assert four[1].battery.capacity_kwh == pytest.approx(4 * one[1].battery.capacity_kwh, abs=0.25)


def test_override_problems_are_reported_with_the_schema_problems():
    with pytest.raises(ConfigError) as err:
        load_scenario(DEFAULT, ["market.k=[1", "name.x=1", "seed=-1", "feeders.0.prosumers.battery_kwh=[13.5, 0]"])
    text = str(err.value)
    assert len(err.value.problems) == 4
    assert "'[1' is not valid YAML" in text and "name is 'default', not a mapping" in text
    assert "seed" in text and "battery_kwh" in text and "[0, 13.5]" in text
