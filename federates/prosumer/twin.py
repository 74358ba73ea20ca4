"""The top-down twin of a prosumer fleet, run ahead of the federation in a low-priority child process.

In the market modes every prosumer federate also runs its members' top-down twin (utility tariff only, no P2P, no
VPP; :meth:`ProsumerFleet.topdown_twin`): its bill is each member's reference for the VPP's guarantee. The twin takes
nothing from the federation, so its whole day is known from the start. :class:`BackgroundTwin` forks a child that
makes the twin and drives it exactly as the federate would (``plan`` at t=0 for slot 0, then for each step of the
federate's schedule: ``dispatch`` at DISPATCH, ``plan`` at L1_BID), writes each interval's net injection and SOC into
memory shared with the parent, and reports the interval done through a pipe. The child runs at the lowest CPU
priority (nice 19), so it fills the cores the federation leaves idle (while the federates wait for each other)
instead of slowing the critical path; the parent blocks only when it needs an interval the twin has not reached.

The twin's state, plans and solvers live only in the child, so its results are the in-process twin's, bit for bit
(the same calls on the same data in the same order). No HELICS here.
"""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing as mp
import os
import signal
import traceback
from collections.abc import Callable, Iterable

import numpy as np

from federates.common.errors import HarmonyError
from federates.common.timebase import Phase, Step
from federates.prosumer.fleet import ProsumerFleet

__all__ = ["BackgroundTwin"]

_PR_SET_PDEATHSIG = 1


class BackgroundTwin:
    """The top-down twin of ``fleet``'s prosumers over ``steps`` (the federate's schedule), computed ahead in a
    child process. Make it right after the fleet, before the fleet plans or dispatches; call :meth:`interval` for
    each DISPATCH step in order, and :meth:`close` at the end (it is also a context manager)."""

    def __init__(self, fleet: ProsumerFleet, steps: Iterable[Step], planned_at: Callable[[Step], float],
                 *, nice: int = 19):
        steps = list(steps)
        self.times_s = [s.time_s for s in steps if s.phase == Phase.DISPATCH]
        self._row = {t: k for k, t in enumerate(self.times_s)}
        n = len(fleet.names)
        self._buf = mmap.mmap(-1, max(1, 2 * len(self.times_s) * n * 8))  # anonymous, shared with the child
        self._out = np.frombuffer(self._buf, dtype=float, count=2 * len(self.times_s) * n).reshape(
            2, len(self.times_s), n)
        ctx = mp.get_context("fork")
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_run, args=(fleet, steps, planned_at, self._out, send, self._recv, nice),
                                 name="topdown-twin", daemon=True)
        self._proc.start()
        send.close()  # the parent keeps only the reading end: EOF when the child is gone
        self._done = 0  # intervals the child has finished

    def interval(self, time_s: int) -> tuple[np.ndarray, np.ndarray]:
        """The twin's (grid_kw, soc_kwh) per prosumer for the interval dispatched at ``time_s`` (waits for it)."""
        k = self._row[time_s]
        while self._done <= k:
            try:
                msg = self._recv.recv()
            except EOFError:
                self._proc.join(timeout=5)
                raise HarmonyError(
                    f"the top-down twin process ended (exit code {self._proc.exitcode}) before the interval at "
                    f"t={time_s} s; see the lines above in this federate's log") from None
            if isinstance(msg, str):
                raise HarmonyError(f"the top-down twin failed before the interval at t={time_s} s:\n{msg}")
            self._done = msg
        return self._out[0, k], self._out[1, k]

    def close(self) -> None:
        """Stop the child if it is still running (the shared memory goes with the last array viewing it)."""
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join()
        self._recv.close()

    def __enter__(self) -> BackgroundTwin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _run(fleet: ProsumerFleet, steps: list[Step], planned_at, out: np.ndarray, send, recv, nice: int) -> None:
    """The child: make the twin and drive it as the federate would, publishing each interval as it is done."""
    recv.close()  # the parent's end: once the parent is gone, sending fails instead of filling the pipe for ever
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the federate
        if os.getppid() == 1:
            os._exit(1)
        os.nice(nice)
        twin = fleet.topdown_twin()
        twin.plan(0.0, 0)
        k = 0
        for step in steps:
            if step.phase == Phase.DISPATCH:
                cols = twin.dispatch_columns(step.time_s, {})
                out[0, k], out[1, k] = cols["grid_kw"], cols["soc_kwh"]
                k += 1
                send.send(k)
            elif step.phase == Phase.L1_BID:
                twin.plan(planned_at(step), step.l1_slot)
    except BaseException:  # noqa: BLE001 - everything goes to the parent, which fails the run naming it
        send.send(traceback.format_exc())
        raise
    finally:
        send.close()
