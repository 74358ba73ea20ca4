"""Scenario -> federation: one config per federate, the wiring check, and the ``helics run`` JSON.

Federate names: ``feeder_<f>``, ``prosumers_<f>_<i>``, ``vpp_<f>``, ``iso``, ``vpp_market``. Which federates
exist depends on the mode: ``topdown``/``netmetering`` run feeders and prosumers only; ``layer1`` adds the
VPPs (P2P platform and voltage guard); ``layer12`` adds the ISO; ``full`` adds the inter-VPP market.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import secrets
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from federates.common.config import ANCILLARY_MODES, P2P_MODES, FeederConfig, Scenario
from federates.common.errors import ConfigError, HarmonyError
from federates.common.recorder import Recorder
from federates.common.wiring import (
    BROKER_KEY_FILE,
    FederateConfig,
    FeederFederate,
    IsoFederate,
    ProsumerFederate,
    Runtime,
    TransmissionFederate,
    TransmissionLink,
    VppFederate,
    VppMarketFederate,
    check_wiring,
    read_broker_key,
)
from federates.feeder.model import FeederModel
from federates.prosumer.devices import ProsumerConfig
from federates.vpp.preferences import trade_premia
from runner.hosts import Hosts
from runner.population import make_prosumers

log = logging.getLogger(__name__)

KIND_MODULE = {"feeder": "federates.feeder", "prosumer": "federates.prosumer", "vpp": "federates.vpp",
               "iso": "federates.iso", "vpp_market": "federates.vpp_market", "transmission": "federates.transmission"}


@dataclass
class PlacedFeeder:
    feeder: FeederConfig
    prosumers: list[ProsumerConfig]
    skipped: dict[str, str]
    distance: dict[str, float]
    houses: dict[str, int]
    notes: dict[str, str] = field(default_factory=dict)  # load -> what placement adjusted (Placement.notes)
    shortfall: str = ""  # why fewer prosumers were placed than asked for
    premia: dict[str, dict[str, float]] = field(default_factory=dict)  # stated premia, buyer -> seller -> $/kWh
    base_converged: bool = True  # the base case (no prosumer power) converged
    base_message: str = ""       # the solver's word on the base case
    sites: dict[str, tuple[str, float]] = field(default_factory=dict)  # load -> (bus, km from the source)
    source_pu: float = 1.0       # the master's source voltage (Vsource.source pu)
    base_p_head_kw: float = 0.0  # head power of the base case (for the transmission system's interval 0)
    base_q_head_kvar: float = 0.0

    def placement_rows(self) -> list[dict]:
        """The ``placement`` table: every prosumer with its load, houses and any placement note, every load not
        placed with the reason, and a row without a load saying so when fewer were placed than asked for."""
        def site(load: str) -> dict:
            bus, km = self.sites.get(load, ("", float("nan")))
            return dict(bus=bus, distance_km=round(km, 6))

        rows = [dict(feeder=self.feeder.name, load=p.load_name, prosumer=p.name,
                     houses=self.houses.get(p.load_name, 1), **site(p.load_name),
                     reason=self.notes.get(p.load_name, "")) for p in self.prosumers]
        rows += [dict(feeder=self.feeder.name, load=load, prosumer="", houses=0, **site(load), reason=why)
                 for load, why in self.skipped.items()]
        if self.shortfall:
            rows.append(dict(feeder=self.feeder.name, load="", prosumer="", houses=0, bus="", distance_km=float("nan"),
                             reason=self.shortfall))
        return rows


def place(scenario: Scenario, *, hand_over: bool = False) -> list[PlacedFeeder]:
    """Compile each feeder once, place its prosumers on loads and measure their electrical distance.

    ``hand_over``: keep each feeder's placement for the next call that places the same feeder (the same config,
    seed and mode's devices, its master's folder unchanged), which takes it instead of compiling the feeder again:
    the pre-launch check (:func:`runner.preflight.preflight`) places every feeder, then :func:`build` does."""
    placed = []
    for feeder in scenario.feeders:
        key = _placement_key(scenario, feeder)
        done = _HANDED_OVER.pop(key, None) or _place_feeder(scenario, feeder)
        if hand_over:
            _HANDED_OVER[key] = done
        placed.append(done)
    return placed


_HANDED_OVER: dict[tuple, PlacedFeeder] = {}  # placements made by a check, for the build that follows it


def _placement_key(scenario: Scenario, feeder: FeederConfig) -> tuple:
    """What :func:`_place_feeder` reads: the feeder's config, the seed, whether it has a community battery or a
    tie line, and the files beside its master (their size and modification time)."""
    folder = Path(feeder.master).parent
    with contextlib.suppress(OSError):
        files = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
                             if p.is_file()))
        return (feeder.model_dump_json(), scenario.seed, scenario.mode in P2P_MODES, scenario.uses_tie, files)
    return (feeder.model_dump_json(), scenario.seed, scenario.mode in P2P_MODES, scenario.uses_tie, None)


def _place_feeder(scenario: Scenario, feeder: FeederConfig) -> PlacedFeeder:
    battery = feeder.vpp.community_battery if scenario.mode in P2P_MODES else None
    model = FeederModel(feeder.master, max_iterations=feeder.max_iterations,
                        max_control_iterations=feeder.max_control_iterations,
                        injectors=([feeder.tie_bus] if scenario.uses_tie else []) + ([battery.bus] if battery else []))
    placement = model.place_prosumers(feeder.prosumers.placement, seed=scenario.seed)
    if not placement.loads:
        raise ConfigError(f"feeders.{feeder.name}: no load could host a prosumer "
                          f"(skipped: {dict(list(placement.skipped.items())[:5])}); name loads explicitly")
    if placement.shortfall:
        log.warning("warning: feeders.%s: %s", feeder.name, placement.shortfall)
    base = model.solve()
    km = model.load_distances_km()
    sites = {x.name: (x.bus, km[x.name]) for x in model.loads()}
    source_pu = model.source_pu
    model.close()
    prosumers = make_prosumers(feeder, placement.loads, scenario.seed, placement.houses)
    distance = {p.name: round(1.0 - base.v_pu.get(p.load_name, 1.0), 6) for p in prosumers}
    premia = trade_premia(feeder.prosumers.preferences, [p.name for p in prosumers], seed=scenario.seed,
                          has_pv={p.name: p.pv is not None for p in prosumers}, distance=distance,
                          feeder=feeder.name)
    return PlacedFeeder(feeder, prosumers, placement.skipped, distance, placement.houses, placement.notes,
                        placement.shortfall, premia=premia, base_converged=base.converged,
                        base_message=base.message, sites=sites, source_pu=source_pu, base_p_head_kw=base.p_head_kw,
                        base_q_head_kvar=base.q_head_kvar)


def write_placement(run_dir: Path, placed: list[PlacedFeeder]) -> None:
    """Record the placement like a federate's part, so ``collect`` merges it into ``results/placement.csv``."""
    recorder = Recorder(run_dir, "builder")
    for p in placed:
        for row in p.placement_rows():
            recorder.add("placement", **row)
    recorder.flush()


PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range (32768-60999), where outgoing connections take ports
PORT_BLOCK = 64
PORT_LOCKS = Path(tempfile.gettempdir()) / "harmony-ports"
_KEPT: list[PortBlock] = []


class PortBlock:
    """Ports ``base .. base + size - 1`` reserved for one federation: the broker listens on ``base`` (and
    ``base + 1``) and hands its federates' zmq cores the ports above.

    The reservation is an exclusive ``flock`` on one file per 64-port block under ``/tmp/harmony-ports``, held
    until :meth:`release` or until this process ends (the kernel drops the lock even after SIGKILL), so runs
    started at the same instant never share a block. A port that another program takes between the check and
    the bind is a lost race that ``harmony run`` retries on another block.
    """

    def __init__(self, base: int, size: int, files: list):
        self.base, self.size, self._files = base, size, files

    def release(self) -> None:
        for fh in self._files:
            fh.close()
        self._files = []

    def __enter__(self) -> PortBlock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def reserve_ports(n_federates: int = 0) -> PortBlock:
    """Reserve a free block of local ports for a federation of ``n_federates`` federates (see :class:`PortBlock`)."""
    size = PORT_BLOCK * -(-(2 * n_federates + 16) // PORT_BLOCK)
    PORT_LOCKS.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        PORT_LOCKS.chmod(0o1777)  # shared by every user's runs, like /tmp
    bases = list(range(PORT_RANGE[0], PORT_RANGE[1] - size + 1, PORT_BLOCK))
    random.Random().shuffle(bases)  # not the scenario's seed: concurrent runs should try different blocks first
    for base in bases:
        files = _lock_blocks(base, size)
        if files is None:
            continue
        if all(_bindable(port) for port in range(base, base + size)):
            return PortBlock(base, size, files)
        for fh in files:
            fh.close()
    raise HarmonyError(f"no free block of {size} local ports for the HELICS broker in {PORT_RANGE[0]}-"
                       f"{PORT_RANGE[1]}; end other federations or pass --port")


def free_port(block: int = PORT_BLOCK) -> int:
    """The base of a reserved port block (for ``harmony build --port`` and tests); the reservation is kept until
    this process ends."""
    reserved = reserve_ports(max((block - 16) // 2, 0))
    _KEPT.append(reserved)
    return reserved.base


def _lock_blocks(base: int, size: int) -> list | None:
    """Locks on every 64-port block of ``base .. base + size - 1``, or None if another run holds one."""
    files = []
    for start in range(base, base + size, PORT_BLOCK):
        fh = _lock_file(PORT_LOCKS / f"{start}.lock")
        if fh is None:
            for held in files:
                held.close()
            return None
        files.append(fh)
    return files


def _lock_file(path: Path):
    try:
        fh = path.open("a")
    except OSError:  # a lock file of another user that we may not open
        return None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by another run
        fh.close()
        return None
    return fh


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ---- sizing: how many prosumers one prosumer federate hosts ---------------------------------------------------
MIN_PROSUMERS_PER_FEDERATE = 20
"""Below this a process costs more (start-up ~2 CPU-s, a HELICS barrier member) than it saves in parallel HEMS."""
FEDERATE_PROCESS_BYTES = 250 * 2**20
"""Resident memory of a prosumer federate process before its prosumers (Python, Pyomo, HiGHS, HELICS)."""
PROSUMER_BYTES = 2 * 2**20
"""Resident memory per hosted prosumer (profiles, two persistent HiGHS LPs: market fleet and top-down twin)."""


def machine_cores() -> int:
    """CPUs this process may run on (the affinity mask, so a container's limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def auto_prosumer_federates(n_prosumers: int, n_feeders: int, cores: int, memory_bytes: int | None) -> int:
    """How many prosumer federates to run: one per core (the HEMS rounds run in parallel), at least one per
    feeder, no more than leaves ``MIN_PROSUMERS_PER_FEDERATE`` each, and no more processes than fit in half
    the available memory next to the prosumers themselves."""
    n = min(cores, max(1, n_prosumers // MIN_PROSUMERS_PER_FEDERATE))
    if memory_bytes is not None:
        spare = memory_bytes // 2 - n_prosumers * PROSUMER_BYTES
        n = min(n, max(1, spare // FEDERATE_PROCESS_BYTES))
    return max(n, n_feeders, 1)


def prosumer_federate_size(scenario: Scenario, placed: list[PlacedFeeder]) -> tuple[int, str]:
    """(prosumers per prosumer federate, a sentence saying how it was chosen): ``federation.prosumers_per_federate``
    when set, else from this machine's cores and available memory (:func:`auto_prosumer_federates`)."""
    from runner.preflight import available_memory_bytes

    n_pros = sum(len(p.prosumers) for p in placed)
    fixed = scenario.federation.prosumers_per_federate
    if fixed is not None:
        return fixed, f"{fixed} prosumers per federate, set by federation.prosumers_per_federate"
    cores, memory = machine_cores(), available_memory_bytes()
    n_feds = auto_prosumer_federates(n_pros, sum(1 for p in placed if p.prosumers), cores, memory)
    size = max(1, -(-n_pros // n_feds))
    mem = f" and {memory / 2**30:.1f} GiB available" if memory is not None else ""
    return size, (f"up to {size} prosumers per federate, chosen for {cores} cores{mem}; "
                  "set federation.prosumers_per_federate to override")


def federate_configs(scenario: Scenario, placed: list[PlacedFeeder], out_dir: Path,
                     broker_port: int) -> list[FederateConfig]:
    mode = scenario.mode
    with_vpp = mode in P2P_MODES
    with_iso = mode in ANCILLARY_MODES
    with_l3 = mode == "full" and scenario.vpp_market.enabled
    tariff = scenario.tariff_for_mode()

    def runtime(name: str, kind: str, pubs: list[str], subs: list[str]) -> Runtime:
        return Runtime(name=name, kind=kind, broker_port=broker_port, log_level=scenario.federation.log_level,
                       start=scenario.start, duration_s=scenario.duration_s, seed=scenario.seed, mode=mode,
                       out_dir=out_dir, publications=pubs, subscriptions=subs)

    configs: list[FederateConfig] = []
    vpps = [f"vpp_{p.feeder.name}" for p in placed] if with_vpp else []
    for p in placed:
        f = p.feeder.name
        feeder_fed, vpp = f"feeder_{f}", f"vpp_{f}"
        size = prosumer_federate_size(scenario, placed)[0]
        chunks = [p.prosumers[i:i + size] for i in range(0, len(p.prosumers), size)]
        pfeds = [f"prosumers_{f}_{i}" for i in range(len(chunks))]
        for name, chunk in zip(pfeds, chunks, strict=True):
            pubs = [f"{name}/injections"] + ([f"{name}/orders", f"{name}/plans"] if with_vpp else [])
            # what the VPP sends each prosumer federate is addressed to it: only its own members
            subs = [f"{vpp}/{t}/{name}" for t in ("positions", "setpoints") + (("reserve",) if with_iso else ())]
            configs.append(ProsumerFederate(runtime=runtime(name, "prosumer", pubs, subs if with_vpp else []),
                                            feeder=f, vpp=vpp, prosumers=chunk, tariff=tariff,
                                            location=scenario.location))
        tie = scenario.uses_tie
        configs.append(FeederFederate(
            runtime=runtime(feeder_fed, "feeder", [f"{feeder_fed}/state"],
                            [f"{n}/injections" for n in pfeds] + (["vpp_market/results"] if tie else [])
                            + ([f"{vpp}/setpoints"] if with_vpp and p.feeder.vpp.community_battery else [])),
            feeder=p.feeder, prosumer_loads={q.name: q.load_name for q in p.prosumers},
            injection_keys=[f"{n}/injections" for n in pfeds], tie_vpp=vpp if tie else None))
        if with_vpp:
            pubs = [f"{vpp}/{t}/{n}" for t in ("positions", "setpoints") for n in pfeds]
            if p.feeder.vpp.community_battery:  # the feeder's own: the community battery's power
                pubs.append(f"{vpp}/setpoints")
            subs = [f"{feeder_fed}/state"] + [f"{n}/{t}" for n in pfeds for t in ("injections", "orders", "plans")]
            if with_iso:
                pubs += [f"{vpp}/offers"] + [f"{vpp}/reserve/{n}" for n in pfeds]
                subs += ["iso/awards", "iso/dispatch"]
            if with_l3:
                pubs.append(f"{vpp}/l3_orders")
                subs.append("vpp_market/results")
            members = {q.name: pf for pf, chunk in zip(pfeds, chunks, strict=True) for q in chunk}
            configs.append(VppFederate(
                runtime=runtime(vpp, "vpp", pubs, subs), feeder=f, members=members, prosumer_feds=pfeds,
                market=scenario.market_of(p.feeder), vpp=p.feeder.vpp, tariff=tariff,
                penalty_multiplier=scenario.iso.penalty_multiplier, l3_enabled=with_l3,
                trade_distance=p.distance, v_min_pu=p.feeder.v_min_pu, v_max_pu=p.feeder.v_max_pu,
                trade_premium=p.premia))
    if with_iso:
        subs = [f"{v}/offers" for v in vpps] + [f"feeder_{p.feeder.name}/state" for p in placed]
        subs += ["vpp_market/results"] if with_l3 else []
        configs.append(IsoFederate(runtime=runtime("iso", "iso", ["iso/awards", "iso/dispatch"], subs),
                                   iso=scenario.iso, vpps=vpps))
    if with_l3:
        configs.append(VppMarketFederate(
            runtime=runtime("vpp_market", "vpp_market", ["vpp_market/results"], [f"{v}/l3_orders" for v in vpps]),
            market=scenario.vpp_market, vpps=vpps))
    if scenario.transmission is not None:
        add_transmission(scenario, placed, configs, runtime)
    check_wiring(configs)
    return configs


def add_transmission(scenario: Scenario, placed: list[PlacedFeeder], configs: list[FederateConfig], runtime) -> None:
    """T&D: the transmission federate (reads the attached feeders' states, publishes their source voltages), and
    each attached feeder subscribed to it with its interval-0 voltage from the pre-run solution
    (:mod:`runner.transmission`)."""
    from runner.transmission import base_of, initial_solution, links

    key = "transmission/voltages"
    rows = [TransmissionLink(**row, state_key=f"feeder_{row['feeder']}/state")
            for row in links(scenario, base_of(placed))]
    initial = initial_solution(scenario, rows)
    if not initial.converged:
        raise ConfigError(f"transmission: {initial.message}; lower transmission.feeders_per_bus", "transmission")
    attached = {r.feeder for r in rows}
    for cfg in configs:
        if isinstance(cfg, FeederFederate) and cfg.feeder.name in attached:
            cfg.transmission_key = key
            cfg.v_source_pu_initial = initial.v_source_pu[cfg.feeder.name]
            cfg.runtime.subscriptions.append(key)
    configs.append(TransmissionFederate(runtime=runtime("transmission", "transmission", [key],
                                                        [r.state_key for r in rows]),
                                        transmission=scenario.transmission, links=rows, voltages_key=key))


def write_federation(configs: list[FederateConfig], out_dir: Path, *, name: str, broker_port: int,
                     portable_root: Path | None = None, external: Sequence[str] = (), broker_options: str = "") -> Path:
    """Write ``out_dir/federates/<name>.json`` per federate and ``out_dir/federation.json`` for ``helics run``.

    With ``portable_root`` every path inside is written relative to the config files, so the folder can be
    committed and run from any checkout. Federates named in ``external`` are run by someone else: they get no
    entry (and no config file), but the broker still waits for them and ``federation.json`` lists them under
    ``external`` (``runner.external`` writes what they need).
    """
    fed_dir = out_dir / "federates"
    fed_dir.mkdir(parents=True, exist_ok=True)
    # --globaltime: the broker grants times for the whole federation (HELICS's global time coordinator) instead of
    # every federate negotiating with each one it depends on: the same grants (every federate is uninterruptible
    # and asks exact times), a third less CPU and sys time on the default day (no futex/poll storm in each core)
    broker = f"helics_broker --globaltime -f {len(configs)} --port={broker_port} --loglevel=warning{broker_options}"
    entries = [{"name": "broker", "directory": ".", "host": "localhost", "exec": broker}]
    for cfg in (c for c in configs if c.runtime.name not in external):
        path = fed_dir / f"{cfg.runtime.name}.json"
        data = json.loads(cfg.model_dump_json())
        if portable_root is not None:
            _relativise(data, fed_dir)
        path.write_text(json.dumps(data, indent=1))
        entries.append({"name": cfg.runtime.name, "directory": ".", "host": "localhost",
                        "exec": f"python -m {KIND_MODULE[cfg.runtime.kind]} --config federates/{path.name}"})
    target = out_dir / "federation.json"
    extra = {"external": list(external)} if external else {}  # `helics run` reads only name and federates
    target.write_text(json.dumps({"name": name, "federates": entries, **extra}, indent=2) + "\n")
    return target


def _relativise(data, base: Path) -> None:
    """Rewrite absolute paths inside a config dict relative to ``base`` (the config file's folder)."""
    runtime = data["runtime"]
    runtime["out_dir"] = os.path.relpath(runtime["out_dir"], base)
    if runtime.get("broker_key_file"):
        runtime["broker_key_file"] = os.path.relpath(runtime["broker_key_file"], base)
    if "feeder" in data and isinstance(data["feeder"], dict):
        data["feeder"]["master"] = os.path.relpath(data["feeder"]["master"], base)
    iso = data.get("iso")
    if iso:
        for key in ("price_csv", "regulation_csv"):
            if iso.get(key):
                iso[key] = os.path.relpath(iso[key], base)


def write_broker_key(out_dir: Path) -> Path:
    """A new random broker key for this run in ``out_dir/broker_key.json``, readable only by its owner (0600).

    The broker reads it with ``--config`` and every federate in its own process (``core_init_string``), so the
    key is never on a command line, where any local user could read it; a process without it is refused by the
    broker ("broker key does not match") and so cannot read the prosumers' injections and headroom.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / BROKER_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # a file left by an earlier build keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({"brokerkey": secrets.token_hex(16)}) + "\n")
    return path


def broker_options(hosts: Hosts | None, key_file: Path | None) -> str:
    """What the broker's command line adds: the interface it listens on (multi-host) and its key file (read
    relative to the build folder, where the broker runs)."""
    options = f" --local_interface=tcp://{hosts.broker_interface}" if hosts is not None else ""
    return options + (f" --config={key_file.name}" if key_file is not None else "")


def join_settings(configs: list[FederateConfig], hosts: Hosts | None, assignment: dict[str, list[str]],
                  key_file: Path | None) -> None:
    """Give every federate the run's key file and, on a multi-host run (``assignment``: host -> federates), the
    broker's address and its own host's address to listen on."""
    host_of = {name: host for host, names in assignment.items() for name in names}
    for cfg in configs:
        cfg.runtime.broker_key_file = key_file
        if hosts is not None:  # an --external federate is on no host of ours but joins the same broker
            cfg.runtime.broker_address = hosts.broker_address
        if cfg.runtime.name in host_of:
            cfg.runtime.interface = hosts.hosts[host_of[cfg.runtime.name]].address


def write_host_federations(federation_json: Path, hosts: Hosts, assignment: dict[str, list[str]]) -> dict[str, Path]:
    """Split ``federation.json`` into ``<host>/federation.json`` per host, each run with ``helics run --path`` on
    its host (the broker's host also starts the broker). The entries run from the build folder, as before, so
    every host needs a copy of it (with ``broker_key.json``, mode 0600). ``federation.json`` itself is removed:
    no single machine runs the whole federation."""
    data = json.loads(federation_json.read_text())
    entries = {e["name"]: e for e in data["federates"]}
    paths = {}
    for host, names in assignment.items():
        mine = (["broker"] if host == hosts.broker.host else []) + [n for n in names if n in entries]
        runner = dict(data, name=f"{data['name']}@{host}", host=host,  # "host" marks it for `harmony collect`
                      federates=[dict(entries[n], directory="..", host=host) for n in mine])
        folder = federation_json.parent / host
        folder.mkdir(exist_ok=True)
        paths[host] = folder / "federation.json"
        paths[host].write_text(json.dumps(runner, indent=2) + "\n")
    federation_json.unlink()
    return paths


def _key_for_external(paths: list[Path], key_file: Path) -> None:
    """An outside federate is built for the run too: its spec's core init string carries the key (and the spec
    becomes readable only by its owner, like the key file)."""
    key = read_broker_key(key_file)
    for path in paths:
        spec = json.loads(path.read_text())
        spec["broker"]["core_init"] += f" --brokerkey={key}"
        path.write_text(json.dumps(spec, indent=1) + "\n")
        path.chmod(0o600)


def build(scenario: Scenario, out_dir: Path, *, broker_port: int | None = None, portable: bool = False,
          results_dir: Path | None = None, external: Sequence[str] = (), hosts: Hosts | None = None,
          broker_key: bool = True) -> tuple[Path, list[FederateConfig], list]:
    """Place prosumers, make every federate's config, check the wiring and write the federation; for each
    federate named in ``external``, ``out_dir/external/<name>.json`` instead of its entry (``runner.external``).

    ``broker_key`` (default): a new key for this run in ``out_dir/broker_key.json`` (:func:`write_broker_key`).
    ``hosts``: one ``out_dir/<host>/federation.json`` per host instead of ``out_dir/federation.json``
    (:func:`write_host_federations`); the returned path is then the broker host's.
    """
    from runner.external import check_external, write_external

    out_dir = out_dir.resolve()
    port = broker_port or (hosts.broker.port if hosts else None) or scenario.federation.broker_port
    placed = place(scenario)
    configs = federate_configs(scenario, placed, (results_dir or out_dir).resolve(), port)
    check_external(configs, external)
    assignment = hosts.assign([c.runtime.name for c in configs if c.runtime.name not in external]) if hosts else {}
    key_file = write_broker_key(out_dir) if broker_key else None
    join_settings(configs, hosts, assignment, key_file)
    path = write_federation(configs, out_dir, name=scenario.name, broker_port=port,
                            portable_root=out_dir if portable else None, external=external,
                            broker_options=broker_options(hosts, key_file))
    specs = write_external(configs, external, out_dir, federation=scenario.name, broker_port=port)
    if key_file is not None:
        _key_for_external(specs, key_file)
    if hosts is not None:
        path = write_host_federations(path, hosts, assignment)[hosts.broker.host]
    return path, configs, placed
