"""A federate that was not built for the run: it tries to join a running federation's broker and subscribe to the
prosumers' injections (power and headroom), as anyone on the machine who read the port from federation.json
could. It uses only ``helics`` and the standard library (no project import).

    python tests/e2e/intruder.py --port 23404 [--address 127.0.0.1] [--interface IP] [--key KEY] [--subscribe KEY]

Prints one JSON object: ``{"joined": true}`` if the broker accepted it (it then disconnects at once, so it never
holds up the federation), else ``{"joined": false, "error": "<what HELICS said>"}``. Exit status 0 either way.
"""

from __future__ import annotations

import argparse
import json

import helics as h


def try_join(address: str, port: int, interface: str | None, key: str | None, subscribe: str,
             timeout_s: float) -> dict:
    info = h.helicsCreateFederateInfo()
    h.helicsFederateInfoSetCoreTypeFromString(info, "zmq")
    init = f"--federates=1 --broker_address=tcp://{address}:{port} --timeout={timeout_s:g}s"
    init += f" --local_interface=tcp://{interface}" if interface else ""  # where the broker's answer reaches it
    h.helicsFederateInfoSetCoreInitString(info, init + (f" --brokerkey={key}" if key else ""))
    try:
        fed = h.helicsCreateValueFederate("intruder", info)
    except h.HelicsException as exc:
        return {"joined": False, "error": str(exc)}
    h.helicsFederateRegisterSubscription(fed, subscribe, "")
    h.helicsFederateDisconnect(fed)
    h.helicsFederateFree(fed)
    return {"joined": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--interface", default=None, help="this host's address (on another host than the broker)")
    parser.add_argument("--key", default=None, help="broker key to present (default: none)")
    parser.add_argument("--subscribe", default="prosumers_suburb_0/injections")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the broker's answer")
    args = parser.parse_args()
    verdict = try_join(args.address, args.port, args.interface, args.key, args.subscribe, args.timeout)
    print(json.dumps(verdict), flush=True)
    h.helicsCloseLibrary()


if __name__ == "__main__":
    main()
