"""What an outside simulator needs to take the place of one of our federates (``harmony build --external NAME``).

``DIR/external/<name>.json`` holds, for federate ``name`` (left out of ``DIR/federation.json``, whose broker
still waits for it):

- ``broker``: host, port, core type and the core init string our own federates use (``runner.build`` adds the
  run's broker key to it and makes the file readable only by its owner), and how many federates the broker
  expects (``federates``, the outside one included);
- ``timing``: its phases (offset in seconds inside each 300 s tick and how often), every time it must request
  (``request_times_s``, as an uninterruptible federate, in order) and the run's ``duration_s`` and ``start``;
- ``publications`` / ``subscriptions``: each HELICS key (global, type ``string``), the payload it carries and
  that payload's JSON Schema (the same as ``docs/schemas/<payload>.json``);
- ``config``: the config our federate would have had (e.g. a feeder's name and which prosumer sits on which
  load), for reference.

The file is written from the same federate configs as the rest of the federation, so its keys always match
the wiring ``harmony validate`` checks. The walkthrough is in ``docs/helics_keys.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from federates.common.errors import ConfigError
from federates.common.messages import SCHEMA_VERSION
from federates.common.timebase import CADENCE, TICK_S, schedule
from federates.common.wiring import FederateConfig
from runner.launch import phases_of
from runner.schemas import payload_of, schema

CORE_TYPE = "zmq"


def check_external(configs: Sequence[FederateConfig], names: Sequence[str]) -> None:
    """Every name given to ``--external`` is a federate of this federation (all problems at once)."""
    known = [c.runtime.name for c in configs]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--external {', '.join(unknown)}: no such federate in this federation; "
                          f"choose among {', '.join(known)}")


def external_spec(cfg: FederateConfig, *, federation: str, n_federates: int, broker_port: int) -> dict:
    """The contents of ``external/<name>.json`` for federate config ``cfg`` (see the module docstring)."""
    rt = cfg.runtime
    host = rt.broker_address  # 127.0.0.1, or the broker host's address from --hosts
    phases = sorted(phases_of(rt.kind, rt.mode))
    times = [step.time_s for step in schedule(set(phases), rt.duration_s)]
    return {
        "name": rt.name,
        "kind": rt.kind,
        "federation": federation,
        "schema_version": SCHEMA_VERSION,
        "broker": {"host": host, "port": broker_port, "core_type": CORE_TYPE, "federates": n_federates,
                   "core_init": f"--federates=1 --broker_address=tcp://{host}:{broker_port}"},
        "timing": {
            "start": rt.start.isoformat(), "duration_s": rt.duration_s, "tick_s": TICK_S, "uninterruptible": True,
            "phases": [{"phase": p.name, "offset_s": p.offset_s, "every_s": int(CADENCE[p])} for p in phases],
            "request_times_s": times,
        },
        "publications": [_key(k) for k in rt.publications],
        "subscriptions": [_key(k) for k in rt.subscriptions],
        "config": json.loads(cfg.model_dump_json(exclude={"runtime"})),
    }


def _key(key: str) -> dict:
    cls = payload_of(key)
    return {"key": key, "type": "string", "global": True, "payload": cls.__name__, "schema": schema(cls)}


def write_external(configs: Sequence[FederateConfig], names: Sequence[str], out_dir: Path, *, federation: str,
                   broker_port: int) -> list[Path]:
    """Write ``out_dir/external/<name>.json`` for each of ``names``."""
    if not names:
        return []
    folder = Path(out_dir) / "external"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for cfg in configs:
        if cfg.runtime.name in names:
            spec = external_spec(cfg, federation=federation, n_federates=len(configs), broker_port=broker_port)
            path = folder / f"{cfg.runtime.name}.json"
            path.write_text(json.dumps(spec, indent=1) + "\n")
            paths.append(path)
    return paths
