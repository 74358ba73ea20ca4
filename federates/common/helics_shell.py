"""The only shared module that imports ``helics``: joining, timing, publishing and reading.

A federate shell reads: advance time -> read inputs -> compute (pure) -> record -> publish. This module gives it
``Shell.steps`` (the federate's phases from :mod:`federates.common.timebase`, granted exactly),
``Shell.publish``/``Shell.read`` (typed payloads, every exchange logged to the ``exchange`` table and, with
``HARMONY_RECORD_PAYLOADS=1``, every published payload to the ``payloads`` table), and
``run_main`` (logging, clean exit, the cause of a failure as the last log line, non-zero exit status).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator

import helics as h

from federates.common.errors import HarmonyError
from federates.common.messages import Payload
from federates.common.recorder import Recorder
from federates.common.timebase import Phase, Step, schedule
from federates.common.wiring import Runtime, core_init_string

log = logging.getLogger(__name__)
RECORD_PAYLOADS_ENV = "HARMONY_RECORD_PAYLOADS"  # "1": also record every published payload (table payloads)


class Shell:
    """A HELICS value federate with declared publications and subscriptions."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.recorder = Recorder(runtime.out_dir, runtime.name)
        info = h.helicsCreateFederateInfo()
        h.helicsFederateInfoSetCoreTypeFromString(info, "zmq")
        h.helicsFederateInfoSetCoreInitString(info, core_init_string(runtime))
        h.helicsFederateInfoSetFlagOption(info, h.HELICS_FLAG_UNINTERRUPTIBLE, True)
        h.helicsFederateInfoSetFlagOption(info, h.HELICS_FLAG_TERMINATE_ON_ERROR, True)
        h.helicsFederateInfoSetIntegerProperty(info, h.HELICS_PROPERTY_INT_LOG_LEVEL, _log_level(runtime.log_level))
        self.fed = h.helicsCreateValueFederate(runtime.name, info)
        self.pubs = {key: h.helicsFederateRegisterGlobalTypePublication(self.fed, key, "string", "")
                     for key in runtime.publications}
        self.subs = {key: h.helicsFederateRegisterSubscription(self.fed, key, "") for key in runtime.subscriptions}
        self.time_s = 0.0
        self.created = time.perf_counter()
        self.wait_s = 0.0
        self.steps_done = 0
        self.grants = 0
        self.fallbacks = 0  # set by a shell whose solves can fall back to a safe plan
        self.record_payloads = os.environ.get(RECORD_PAYLOADS_ENV, "") not in ("", "0")

    def steps(self, phases: set[Phase]) -> Iterator[Step]:
        """Enter executing mode, then yield each of the federate's steps once HELICS grants its time (steps at the
        same second, in phase order, under one grant)."""
        log.info("%s: set up in %.2f s; entering executing mode", self.runtime.name, time.perf_counter() - self.created)
        t0 = time.perf_counter()
        h.helicsFederateEnterExecutingMode(self.fed)
        self.wait_s += time.perf_counter() - t0
        fault_at = _fault_time(self.runtime.name)
        flushed_cycle = 0
        for step in schedule(phases, self.runtime.duration_s):
            if fault_at is not None and step.time_s >= fault_at:
                raise HarmonyError(f"fault injected by HARMONY_FAULT at t={step.time_s} s")
            if self.grants == 0 or step.time_s != self.time_s:  # phases at the same second share one grant
                t0 = time.perf_counter()
                granted = h.helicsFederateRequestTime(self.fed, step.time_s)
                self.wait_s += time.perf_counter() - t0
                if abs(granted - step.time_s) > 1e-6:
                    raise HarmonyError(f"{self.runtime.name}: asked for t={step.time_s} s, HELICS granted {granted} s")
                self.time_s = step.time_s  # HELICS grants t=0 as its epsilon (1e-9): record the exact phase time
                self.grants += 1
            cycle = step.tick_start_s // 1800
            if cycle != flushed_cycle:  # once per simulated half hour, so a crash loses at most that
                self.recorder.flush()
                flushed_cycle = cycle
            yield step
            self.steps_done += 1

    def publish(self, key: str, payload: Payload, target: int) -> None:
        text = payload.dumps()
        h.helicsPublicationPublishString(self.pubs[key], text)
        self.recorder.add("exchange", time=self.time_s, federate=self.runtime.name, action="publish", key=key,
                          target=target)
        if self.record_payloads:
            self.recorder.add("payloads", time=self.time_s, federate=self.runtime.name, key=key, target=target,
                              payload=text)

    def read(self, key: str, cls: type[Payload]) -> Payload | None:
        """The latest value on ``key`` if it was updated since the last read, else None."""
        sub = self.subs[key]
        if not h.helicsInputIsUpdated(sub):
            return None
        payload = cls.loads(_get_string(sub))
        target = getattr(payload, "slot", getattr(payload, "interval", -1))
        self.recorder.add("exchange", time=self.time_s, federate=self.runtime.name, action="read", key=key,
                          target=target)
        return payload

    def __enter__(self) -> Shell:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Flush what was recorded; on failure tell the whole federation, so nobody waits for us forever."""
        total = time.perf_counter() - self.created
        log.info("%s: %d steps in %d time grants, wall %.2f s, waiting for HELICS %.2f s, own compute %.2f s",
                 self.runtime.name, self.steps_done, self.grants, total, self.wait_s, total - self.wait_s)
        self.recorder.add("federate_stats", time=self.time_s, federate=self.runtime.name, kind=self.runtime.kind,
                          steps=self.steps_done, wall_s=round(total, 3), helics_wait_s=round(self.wait_s, 3),
                          compute_s=round(total - self.wait_s, 3), fallbacks=self.fallbacks)
        self.recorder.flush()
        if exc is not None:
            h.helicsFederateGlobalError(self.fed, 1, f"{self.runtime.name}: {type(exc).__name__}: {exc}")
        else:
            h.helicsFederateDisconnect(self.fed)
        h.helicsFederateFree(self.fed)


def _get_string(sub) -> str:
    """``helicsInputGetString`` without its per-call cost: the binding parses a new cffi type
    ``char[N]`` for every new payload length N (about 1.5 ms, more than the rest of a read), while the
    open array type ``char[]`` is parsed once and cached (a few microseconds); same C call, same text."""
    err = h.helicsErrorInitialize()
    size = h.helicsInputGetStringSize(sub) + 1024
    buf = h.ffi.new("char[]", size)
    length = h.ffi.new("int[1]")
    _GET_STRING(sub.handle, buf, size, length, err)
    if err.error_code != 0:
        raise h.HelicsException(f"[{err.error_code}] {h.ffi.string(err.message).decode()}")
    return h.ffi.string(buf, maxlen=length[0]).decode()


_GET_STRING = h.loadSym("helicsInputGetString")


def _fault_time(name: str) -> float | None:
    """Fault injection for testing the failure path: ``HARMONY_FAULT=<federate>@<seconds>`` makes that
    federate fail at that simulated time."""
    spec = os.environ.get("HARMONY_FAULT", "")
    who, _, when = spec.partition("@")
    return float(when) if who == name and when else None


def _log_level(name: str) -> int:
    return {"error": h.HELICS_LOG_LEVEL_ERROR, "warning": h.HELICS_LOG_LEVEL_WARNING,
            "summary": h.HELICS_LOG_LEVEL_SUMMARY, "connections": h.HELICS_LOG_LEVEL_CONNECTIONS,
            "debug": h.HELICS_LOG_LEVEL_DEBUG}.get(name, h.HELICS_LOG_LEVEL_WARNING)


def run_main(body: Callable[[str], None], description: str) -> None:
    """Entry point of a federate process: ``python -m federates.<kind> --config FILE``.

    On failure the cause is the last log line and the process exits with status 1, so ``helics run`` (which
    prints a failed federate's last log lines) and ``harmony run`` tell the user what failed.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="federate config JSON written by `harmony build`")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyomo").setLevel(logging.WARNING)
    try:
        body(args.config)
    except Exception as exc:  # noqa: BLE001 - the last line must say why, whatever it was
        log.exception("federate failed")
        log.error("FAILED: %s: %s", type(exc).__name__, exc)
        h.helicsCloseLibrary()
        sys.exit(1)
    h.helicsCloseLibrary()
