"""Per-federate configurations and the federation's wiring (who publishes and subscribes what).

``runner.build`` turns a scenario into one of these per federate and checks the wiring before anything runs:
every subscription must be matched by exactly one publication. HELICS keys are the publishing federate's name
followed by ``/`` and the topic, e.g. ``prosumers_suburb_0/injections`` (see ``docs/helics_keys.md``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from federates.common.config import (
    FeederConfig,
    IsoConfig,
    MarketConfig,
    Mode,
    TransmissionConfig,
    VppConfig,
    VppMarketConfig,
)
from federates.common.errors import WiringError
from federates.prosumer.devices import Location, ProsumerConfig, TariffConfig


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Runtime(Model):
    """What every federate needs to join the federation and record results."""

    name: str
    kind: Literal["feeder", "prosumer", "vpp", "iso", "vpp_market", "transmission"]
    broker_port: int
    broker_address: str = "127.0.0.1"        # where the broker listens (its host's address on multi-host runs)
    interface: str | None = None             # this federate's host address, its core listens there (None: local)
    broker_key_file: Path | None = None      # JSON {"brokerkey": ...} (mode 0600) the broker requires; None: no key
    log_level: str = "warning"
    start: datetime
    duration_s: int
    seed: int
    mode: Mode = "full"
    out_dir: Path
    publications: list[str] = Field(default_factory=list)
    subscriptions: list[str] = Field(default_factory=list)


class FeederFederate(Model):
    runtime: Runtime
    feeder: FeederConfig
    prosumer_loads: dict[str, str]          # prosumer -> OpenDSS load name
    injection_keys: list[str]                # one per prosumer federate of this feeder
    tie_vpp: str | None = None               # tie mode: the VPP whose Layer III trades flow over the tie
    transmission_key: str | None = None      # T&D: the key of the transmission voltages (None: no transmission)
    v_source_pu_initial: float | None = None  # T&D: source voltage of interval 0 (pre-run transmission solution)


class ProsumerFederate(Model):
    runtime: Runtime
    feeder: str
    vpp: str
    prosumers: list[ProsumerConfig]
    tariff: TariffConfig
    location: Location


class VppFederate(Model):
    runtime: Runtime
    feeder: str
    members: dict[str, str]                  # prosumer -> hosting prosumer federate
    prosumer_feds: list[str]
    market: MarketConfig
    vpp: VppConfig
    tariff: TariffConfig
    penalty_multiplier: float
    l3_enabled: bool
    trade_distance: dict[str, float] = Field(default_factory=dict)   # prosumer -> electrical distance (pu drop)
    trade_premium: dict[str, dict[str, float]] = Field(default_factory=dict)  # buyer -> seller -> premium per kWh
    v_min_pu: float = 0.95                   # the feeder's service voltage range, kept by corrective setpoints
    v_max_pu: float = 1.05


class IsoFederate(Model):
    runtime: Runtime
    iso: IsoConfig
    vpps: list[str]


class VppMarketFederate(Model):
    runtime: Runtime
    market: VppMarketConfig
    vpps: list[str]


class TransmissionLink(Model):
    """A feeder attached to the transmission system (``federates.transmission.model.Attachment`` plus its
    base-case head power, from which the pre-run solution for interval 0 is made)."""

    feeder: str
    bus: int                                 # the case's bus number
    copies: int                              # identical feeders on the bus
    tap_pu: float                            # its source voltage when the bus is at 1 pu (fixed substation tap)
    source_pu: float                         # its master's own source voltage (the OLTC's target)
    base_p_head_kw: float                    # its head power in the base case (builder's solve, no prosumer power)
    base_q_head_kvar: float
    state_key: str                           # where it publishes its state (head P/Q)


class TransmissionFederate(Model):
    runtime: Runtime
    transmission: TransmissionConfig
    links: list[TransmissionLink]
    voltages_key: str                        # what it publishes


FederateConfig = (FeederFederate | ProsumerFederate | VppFederate | IsoFederate | VppMarketFederate
                  | TransmissionFederate)


def check_wiring(configs: list[FederateConfig]) -> None:
    """Every subscription has exactly one publication; keys are unique. Reports every problem at once."""
    problems: list[str] = []
    publishers: dict[str, list[str]] = {}
    for cfg in configs:
        for key in cfg.runtime.publications:
            publishers.setdefault(key, []).append(cfg.runtime.name)
    for key, names in publishers.items():
        if len(names) > 1:
            problems.append(f"key {key!r} is published by {len(names)} federates {names}; keys must be unique")
    names = [c.runtime.name for c in configs]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"federate name {dup!r} is used more than once")
    for cfg in configs:
        for key in cfg.runtime.subscriptions:
            if key not in publishers:
                problems.append(f"{cfg.runtime.name} subscribes to {key!r}, which nobody publishes")
    if problems:
        raise WiringError(problems, "federation wiring")


BROKER_KEY_FILE = "broker_key.json"  # in the build folder: {"brokerkey": "<hex>"}, mode 0600, read by broker and cores


def read_broker_key(path: Path) -> str:
    """The broker key in ``path`` (written by ``harmony build``/``run``); WiringError naming the file if unusable."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise WiringError(f"cannot read the broker key {path}: {exc.strerror}; copy the build folder's "
                          f"{BROKER_KEY_FILE} with it (keeping mode 0600), or rebuild", "broker key") from None
    except ValueError:
        data = None
    key = data.get("brokerkey") if isinstance(data, dict) else None
    if not isinstance(key, str) or not key or any(c.isspace() for c in key):
        raise WiringError(f"{path} holds no broker key: expected {{\"brokerkey\": \"<text without spaces>\"}}; "
                          "rebuild with `harmony build`", "broker key")
    return key


def core_init_string(runtime: Runtime) -> str:
    """The zmq core's options: the broker's address and port, the interface this core listens on (its host's
    address on a multi-host run; HELICS' default, localhost, otherwise) and the run's broker key, without which
    the broker refuses the connection. The key is read here, in-process, so it never appears on a command line."""
    options = ["--federates=1", f"--broker_address=tcp://{runtime.broker_address}:{runtime.broker_port}"]
    if runtime.interface:
        options.append(f"--local_interface=tcp://{runtime.interface}")
    if runtime.broker_key_file is not None:
        options.append(f"--brokerkey={read_broker_key(runtime.broker_key_file)}")
    return " ".join(options)


def load_federate_config(path: str | Path, cls: type[Model]) -> Model:
    """Read a federate's JSON config (written by ``harmony build``); relative paths are relative to the file."""
    path = Path(path).resolve()
    cfg = cls.model_validate_json(path.read_text())
    out_dir = cfg.runtime.out_dir
    if not out_dir.is_absolute():
        cfg.runtime.out_dir = (path.parent / out_dir).resolve()
    key_file = cfg.runtime.broker_key_file
    if key_file is not None and not key_file.is_absolute():
        cfg.runtime.broker_key_file = (path.parent / key_file).resolve()
    feeder = getattr(cfg, "feeder", None)
    if isinstance(feeder, FeederConfig) and not feeder.master.is_absolute():
        feeder.master = (path.parent / feeder.master).resolve()
    iso = getattr(cfg, "iso", None)
    if isinstance(iso, IsoConfig):
        for key in ("price_csv", "regulation_csv"):
            value = getattr(iso, key)
            if value is not None and not value.is_absolute():
                setattr(iso, key, (path.parent / value).resolve())
    return cfg
