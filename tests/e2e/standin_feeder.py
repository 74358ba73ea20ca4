"""A stand-in for an external grid simulator, written only from docs/helics_keys.md and the external JSON that
``harmony build --external`` writes. It uses only ``helics``, ``json`` and the standard library (no project
import), as an outside simulator would.

Its "power flow" is deliberately crude and easy to check: a prosumer that exports (``p_kw`` > 0) sees
``--high-pu`` at its service point, every other one ``--low-pu``; the head supplies what the prosumers do
not (``p_head_kw`` = -sum of injections), no losses. Every state it publishes is also written, one JSON
object per line, to ``--log``, so a test can compare what the market layers did with what they were told.

    python tests/e2e/standin_feeder.py DIR/external/feeder_suburb.json --log standin.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import helics as h

V_LIMIT_PU = 1.05  # ANSI C84.1 range A, the limit a violation names


def conforms(payload: dict, schema: dict) -> list[str]:
    """Top-level check against a payload's JSON Schema: required fields present, no field it does not name."""
    props = schema.get("properties", {})
    problems = [f"missing {k}" for k in schema.get("required", []) if k not in payload]
    if schema.get("additionalProperties") is False:
        problems += [f"unknown field {k}" for k in payload if k not in props]
    return problems


def state(spec: dict, t: int, p_kw: dict[str, float], high_pu: float, low_pu: float) -> dict:
    """A FeederStateMsg for the interval that starts at the tick of ``t``."""
    tick = spec["timing"]["tick_s"]
    loads = spec["config"]["prosumer_loads"]
    v_pu = {p: (high_pu if p_kw.get(p, 0.0) > 0.0 else low_pu) for p in loads}
    members = sum(p_kw.values())
    return {
        "schema_version": spec["schema_version"], "time_s": float(t), "interval": t // tick,
        "feeder": spec["config"]["feeder"]["name"], "converged": True, "v_pu": v_pu,
        "v_min_pu": min(v_pu.values()), "v_max_pu": max(v_pu.values()), "p_head_kw": -members,
        "q_head_kvar": 0.0, "losses_kw": 0.0, "max_loading_pct": 0.0, "members_p_kw": members,
        "violations": [{"kind": "overvoltage", "element": loads[p], "value": v, "limit": V_LIMIT_PU, "prosumer": p}
                       for p, v in v_pu.items() if v > V_LIMIT_PU],
        "message": "stand-in feeder",
    }


def run(spec: dict, log_path: Path, high_pu: float, low_pu: float) -> int:
    broker = spec["broker"]
    info = h.helicsCreateFederateInfo()
    h.helicsFederateInfoSetCoreTypeFromString(info, broker["core_type"])
    h.helicsFederateInfoSetCoreInitString(info, broker["core_init"])
    h.helicsFederateInfoSetFlagOption(info, h.HELICS_FLAG_UNINTERRUPTIBLE, spec["timing"]["uninterruptible"])
    fed = h.helicsCreateValueFederate(spec["name"], info)
    (pub_spec,) = spec["publications"]
    pub = h.helicsFederateRegisterGlobalTypePublication(fed, pub_spec["key"], pub_spec["type"], "")
    subs = {s["key"]: h.helicsFederateRegisterSubscription(fed, s["key"], "") for s in spec["subscriptions"]}
    p_kw: dict[str, float] = {}
    h.helicsFederateEnterExecutingMode(fed)
    with log_path.open("w") as log:
        for t in spec["timing"]["request_times_s"]:
            granted = h.helicsFederateRequestTime(fed, t)
            if granted != t:
                raise RuntimeError(f"asked for t={t} s, granted {granted} s")
            read = {}
            for key, sub in subs.items():
                if h.helicsInputIsUpdated(sub):
                    msg = json.loads(h.helicsInputGetString(sub))
                    if msg.get("schema_version", spec["schema_version"]) != spec["schema_version"]:
                        raise RuntimeError(f"{key}: schema_version {msg['schema_version']}, "
                                           f"expected {spec['schema_version']}")
                    read[key] = msg["interval"]
                    p_kw.update(msg["p_kw"])
            out = state(spec, t, p_kw, high_pu, low_pu)
            problems = conforms(out, pub_spec["schema"])
            if problems:
                raise RuntimeError(f"{pub_spec['key']}: payload does not match its schema: {problems}")
            h.helicsPublicationPublishString(pub, json.dumps(out))
            log.write(json.dumps({"t": t, "read": read, "p_kw": dict(p_kw), "state": out}) + "\n")
    h.helicsFederateDisconnect(fed)
    h.helicsFederateFree(fed)
    h.helicsCloseLibrary()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="DIR/external/<name>.json written by harmony build --external")
    parser.add_argument("--log", type=Path, required=True, help="JSON lines: what was read and published")
    parser.add_argument("--high-pu", type=float, default=1.08, help="voltage of an exporting prosumer")
    parser.add_argument("--low-pu", type=float, default=1.0, help="voltage of every other prosumer")
    args = parser.parse_args(argv)
    return run(json.loads(args.spec.read_text()), args.log, args.high_pu, args.low_pu)


if __name__ == "__main__":
    sys.exit(main())
