"""Which federates run on which machine: ``hosts.yaml`` for ``harmony build --hosts`` (see ``docs/hosts.md``).

::

    broker:
      host: hub              # the host (below) that runs the broker
      port: 23404            # optional; default: --port, else the scenario's federation.broker_port
      interface: 10.231.7.1  # optional; the address the broker listens on (default: its host's address)
    hosts:
      hub:
        address: 10.231.7.1            # where the other hosts reach this one; its federates listen here
        federates: [iso, vpp_market, "vpp_*"]
      feeders: {address: 10.231.7.2, federates: ["feeder_*"]}
      prosumers: {address: 10.231.7.3, federates: ["prosumers_*"]}

``federates`` holds names or shell-style patterns (``fnmatch``); every federate of the scenario must match
exactly one host, and every pattern some federate, so a typo fails before anything runs.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federates.common.config import format_validation_error, read_mapping
from federates.common.errors import ConfigError

HOST_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # a host's name is also its folder: DIR/<host>/federation.json


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrokerPlacement(_Model):
    host: str = Field(description="the host that runs the broker (a key of hosts)")
    port: int | None = Field(None, ge=1024, le=65535, description="broker port (default: --port, else the "
                             "scenario's federation.broker_port)")
    interface: str | None = Field(None, description="address the broker listens on, e.g. 0.0.0.0 for all "
                                  "(default: its host's address)")


class HostPlacement(_Model):
    address: str = Field(min_length=1, description="IP address or DNS name the other hosts reach this host at; "
                         "its federates' HELICS cores listen on it")
    federates: list[str] = Field(default_factory=list, description="federate names or fnmatch patterns")


class Hosts(_Model):
    """A federation split over several machines (one ``helics run`` per host)."""

    broker: BrokerPlacement
    hosts: dict[str, HostPlacement] = Field(min_length=1)

    @property
    def broker_address(self) -> str:
        """Where the federates reach the broker: its host's address."""
        return self.hosts[self.broker.host].address

    @property
    def broker_interface(self) -> str:
        return self.broker.interface or self.broker_address

    def assign(self, names: list[str]) -> dict[str, list[str]]:
        """Host -> the federates it runs (in ``names`` order). Raises ConfigError listing every federate matched
        by no host or by several, every pattern that matches nothing, and every host left with nothing to run."""
        problems = []
        placed: dict[str, list[str]] = {host: [] for host in self.hosts}
        for name in names:
            where = [h for h, spec in self.hosts.items() if any(fnmatch.fnmatchcase(name, p) for p in spec.federates)]
            if not where:
                problems.append(f"federate {name!r} is on no host; add it (or a pattern matching it) to the "
                                "federates of one host")
            elif len(where) > 1:
                problems.append(f"federate {name!r} is on {len(where)} hosts {where}; give it to exactly one")
            else:
                placed[where[0]].append(name)
        for host, spec in self.hosts.items():
            for pattern in spec.federates:
                if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                    problems.append(f"hosts.{host}.federates: {pattern!r} matches no federate of this scenario "
                                    f"(its federates: {', '.join(names)})")
            if not placed[host] and host != self.broker.host:
                problems.append(f"hosts.{host} runs nothing: give it federates or remove it")
        if problems:
            raise ConfigError(problems, "hosts")
        return placed


def load_hosts(path: str | Path) -> Hosts:
    """Read and check a hosts file; raises ConfigError listing every problem, each with its field's path."""
    path = Path(path).resolve()
    data = read_mapping(path)
    try:
        hosts = Hosts.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc), str(path)) from None
    problems = [f"hosts.{name}: {name!r} is not usable as a folder name; use letters, digits, '_', '.', '-'"
                for name in hosts.hosts if not _is_folder_name(name)]
    if hosts.broker.host not in hosts.hosts:
        problems.append(f"broker.host: {hosts.broker.host!r} is not one of the hosts ({', '.join(hosts.hosts)}); "
                        "name the host that runs the broker")
    if problems:
        raise ConfigError(problems, str(path))
    return hosts


def _is_folder_name(name: str) -> bool:
    return re.match(HOST_NAME, name) is not None and name not in ("federates", "parts", "results", "figures")
