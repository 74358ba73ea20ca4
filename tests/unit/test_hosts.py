"""hosts.yaml (issue #14): which federates run where; every mistake reported at once, before anything runs."""

from __future__ import annotations

import pytest

from federates.common.errors import ConfigError
from federates.common.wiring import Runtime, core_init_string
from runner.hosts import load_hosts

NAMES = ["prosumers_a_0", "prosumers_a_1", "feeder_a", "vpp_a", "iso"]
GOOD = """broker: {host: hub, port: 24000}
hosts:
  hub: {address: 10.231.7.1, federates: [vpp_*, iso]}
  grid: {address: 10.231.7.2, federates: [feeder_*]}
  homes: {address: 10.231.7.3, federates: ["prosumers_*"]}
"""


def write(tmp_path, text: str):
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return path


def test_patterns_place_every_federate_on_one_host_and_the_broker_listens_on_its_hosts_address(tmp_path):
    hosts = load_hosts(write(tmp_path, GOOD))
    assert hosts.assign(NAMES) == {"hub": ["vpp_a", "iso"], "grid": ["feeder_a"],
                                   "homes": ["prosumers_a_0", "prosumers_a_1"]}
    assert hosts.broker_address == hosts.broker_interface == "10.231.7.1" and hosts.broker.port == 24000


def test_every_placement_mistake_is_reported_at_once(tmp_path):
    hosts = load_hosts(write(tmp_path, """broker: {host: hub}
hosts:
  hub: {address: 10.0.0.1, federates: [vpp_*, "feedr_*"]}
  grid: {address: 10.0.0.2, federates: ["*_a"]}
  spare: {address: 10.0.0.3}
"""))
    with pytest.raises(ConfigError) as err:
        hosts.assign(NAMES)
    text = str(err.value)
    assert "'prosumers_a_0' is on no host" in text and "'iso' is on no host" in text
    assert "'vpp_a' is on 2 hosts ['hub', 'grid']" in text
    assert "'feedr_*' matches no federate" in text and "hosts.spare runs nothing" in text
    assert len(err.value.problems) == 6


def test_a_bad_file_names_each_field(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_hosts(write(tmp_path, "broker: {host: nowhere, port: 80}\nhosts: {a: {federates: []}}\n"))
    text = str(err.value)
    assert "broker.port" in text and "hosts.a.address" in text
    with pytest.raises(ConfigError, match="broker.host: 'nowhere' is not one of the hosts"):
        load_hosts(write(tmp_path, "broker: {host: nowhere}\nhosts: {a: {address: x, federates: []}}\n"))
    with pytest.raises(ConfigError, match="not usable as a folder name"):
        load_hosts(write(tmp_path, "broker: {host: parts}\nhosts: {parts: {address: x}}\n"))


def _runtime(**kw) -> Runtime:
    return Runtime(name="x", kind="feeder", broker_port=24000, start="2024-01-01T00:00:00", duration_s=300, seed=0,
                   out_dir=".", **kw)


def test_core_init_string_joins_the_brokers_address_from_this_hosts_interface_with_the_key(tmp_path):
    assert core_init_string(_runtime()) == "--federates=1 --broker_address=tcp://127.0.0.1:24000"
    key = tmp_path / "broker_key.json"
    key.write_text('{"brokerkey": "abc123"}')
    init = core_init_string(_runtime(broker_address="10.0.0.1", interface="10.0.0.2", broker_key_file=key))
    assert init == ("--federates=1 --broker_address=tcp://10.0.0.1:24000 --local_interface=tcp://10.0.0.2 "
                    "--brokerkey=abc123")
    key.write_text('{"brokerkey": "two words"}')
    with pytest.raises(ConfigError, match="holds no broker key"):
        core_init_string(_runtime(broker_key_file=key))
    with pytest.raises(ConfigError, match="cannot read the broker key"):
        core_init_string(_runtime(broker_key_file=tmp_path / "missing.json"))


def test_an_external_federate_is_told_the_broker_hosts_address_not_loopback(tmp_path):
    import json
    from pathlib import Path

    from federates.common.config import load_scenario
    from runner.build import build

    small = Path(__file__).resolve().parents[1] / "e2e" / "small.yaml"
    hosts = load_hosts(write(tmp_path, """broker: {host: hub, port: 24000}
hosts:
  hub: {address: 10.231.7.1, federates: [vpp_*, iso]}
  homes: {address: 10.231.7.3, federates: ["prosumers_*", "feeder_*"]}
"""))
    build(load_scenario(small), tmp_path / "out", hosts=hosts, external=["feeder_suburb"])
    spec = json.loads((tmp_path / "out" / "external" / "feeder_suburb.json").read_text())
    assert spec["broker"]["host"] == "10.231.7.1" and spec["broker"]["port"] == 24000
    assert "tcp://10.231.7.1:24000" in spec["broker"]["core_init"]
