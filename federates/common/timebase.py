"""The federation's clock: HELICS seconds <-> slot indices <-> phases of the 5-minute tick.

HELICS time is seconds since the scenario start. The feeder and real-time dispatch run on 5-minute ticks
(``TICK_S``); Layer I clears every 30 minutes (``L1_PERIOD_S``) for the slot 30 minutes ahead, Layer II every
15 minutes (``L2_PERIOD_S``) for the slot 15 minutes ahead, Layer III every 5 minutes (``L3_PERIOD_S``) for the
interval 5 minutes ahead.

Inside each tick ``tau = n * TICK_S`` the federates act in phases (:class:`Phase`) at integer-second offsets
(:data:`OFFSET_S`). A value published at ``tau + k`` is read by its subscribers at ``tau + j`` with ``j > k``:
HELICS only grants a later time once every publisher has moved past the earlier one, so nothing arrives one step
late and nothing is read before it is written. ``docs/timing.md`` shows one whole 30-minute cycle.

Every federate asks for exactly the times of its own phases (:func:`schedule`), in order, as an
uninterruptible federate; its phases at the same second share one time grant (:func:`grant_times`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

TICK_S = 300
L1_PERIOD_S = 1800
L2_PERIOD_S = 900
L3_PERIOD_S = 300


class Cadence(IntEnum):
    """How often a phase happens, in seconds."""

    TICK = TICK_S
    L2 = L2_PERIOD_S
    L1 = L1_PERIOD_S


class Phase(IntEnum):
    """What a federate does in a tick ``tau``, in the order it happens (the value orders phases; the second inside
    the tick is :attr:`offset_s`, from :data:`OFFSET_S`: several phases may share a second).

    Interval ``n`` is ``[tau, tau + 300)``. Layer I slot ``m`` is ``[m * 1800, (m + 1) * 1800)``; Layer II
    slot ``q`` is ``[q * 900, (q + 1) * 900)``.
    """

    DISPATCH = 0    # prosumers: real-time dispatch of interval n; publish net injections (feeder, VPP meter)
    L1_BID = 1      # (every 30 min) prosumers: decide and post P2P orders for slot m + 1
    SETTLE = 2      # ISO: settle interval n - 1 from its metered power (one tick after it, so also at the end)
    L3_SIGNAL = 3   # ISO: dispatch signal (regulation, reserve deployment) for interval n + 1
    PHYSICS = 4     # feeder: power flow of interval n; publish voltages, head power, violations, metered power
    L1_CLEAR = 5    # (every 30 min) VPP: clear the feeder's P2P market for slot m + 1; publish positions
    MEASURE = 6     # VPP: read the feeder state of interval n, plan corrective action
    L3_ORDER = 7    # VPP: forecast delivery vs commitment for interval n + 1; post Layer III orders
    L1_COMMIT = 8   # (every 30 min) prosumers: take positions as commitments, re-plan, post plans + flexibility
    L2_OFFER = 9    # (every 15 min) VPP: aggregate the overflow of slot q + 1; post ancillary offers to the ISO
    L3_CLEAR = 10   # inter-VPP market: clear interval n + 1; publish trades
    L2_CLEAR = 11   # (every 15 min) ISO: clear the ancillary market for slot q + 1; publish awards and prices
    L2_AWARD = 12   # (every 15 min) VPP: disaggregate awards into members' reserve commitments
    SETPOINT = 13   # VPP: members' setpoints for interval n + 1 (ancillary delivery + corrective caps)

    @property
    def offset_s(self) -> int:
        """The second inside the tick at which this phase runs."""
        return OFFSET_S[self]


OFFSET_S: dict[Phase, int] = {
    Phase.DISPATCH: 0,
    Phase.L1_BID: 0,
    Phase.SETTLE: 0,
    Phase.L3_SIGNAL: 0,
    Phase.PHYSICS: 1,
    Phase.L1_CLEAR: 1,
    Phase.MEASURE: 2,
    Phase.L3_ORDER: 2,
    Phase.L1_COMMIT: 2,
    Phase.L2_OFFER: 3,
    Phase.L3_CLEAR: 3,
    Phase.L2_CLEAR: 4,
    Phase.L2_AWARD: 5,
    Phase.SETPOINT: 5,
}
"""Second of each phase inside its tick. A value published at one second is read only at a later second (never
at the same one: HELICS may grant a reader that second before the writer has published), so a phase that reads
what another publishes has a larger offset; phases of one federate at the same second share one time grant."""

CADENCE: dict[Phase, Cadence] = {
    Phase.DISPATCH: Cadence.TICK,
    Phase.L1_BID: Cadence.L1,
    Phase.SETTLE: Cadence.TICK,
    Phase.L3_SIGNAL: Cadence.TICK,
    Phase.PHYSICS: Cadence.TICK,
    Phase.L1_CLEAR: Cadence.L1,
    Phase.MEASURE: Cadence.TICK,
    Phase.L3_ORDER: Cadence.TICK,
    Phase.L1_COMMIT: Cadence.L1,
    Phase.L2_OFFER: Cadence.L2,
    Phase.L3_CLEAR: Cadence.TICK,
    Phase.L2_CLEAR: Cadence.L2,
    Phase.L2_AWARD: Cadence.L2,
    Phase.SETPOINT: Cadence.TICK,
}

LOOKING_BACK: frozenset[Phase] = frozenset({Phase.SETTLE})
"""Phases that act on the interval before their tick's: they start at the second tick and run once more at the
tick after the last (``t = duration_s``), so the last interval is settled too."""

PREPARING: frozenset[Phase] = frozenset(set(Phase) - {Phase.DISPATCH, Phase.PHYSICS, Phase.MEASURE, Phase.SETTLE})
"""Phases that work for a later slot or interval: skipped when it would start at or after the end of the run."""


@dataclass(frozen=True)
class Step:
    """One step of a federate: which phase, at which granted time, and where it sits on every clock."""

    time_s: int
    phase: Phase

    @property
    def tick_start_s(self) -> int:
        return self.time_s - self.phase.offset_s

    @property
    def interval(self) -> int:
        """Index of the 5-minute interval this tick starts (interval n = [n*300, (n+1)*300))."""
        return self.tick_start_s // TICK_S

    @property
    def l1_slot(self) -> int:
        """Layer I slot being bid or cleared at this gate: the slot 30 minutes ahead."""
        return self.tick_start_s // L1_PERIOD_S + 1

    @property
    def l2_slot(self) -> int:
        """Layer II slot being offered or awarded at this gate: the slot 15 minutes ahead."""
        return self.tick_start_s // L2_PERIOD_S + 1


def schedule(phases: set[Phase] | frozenset[Phase], duration_s: int) -> Iterator[Step]:
    """Yield every step of the given phases in time order (phases of one second in :class:`Phase` order), for
    ticks that start before ``duration_s`` (and, for phases :data:`LOOKING_BACK`, the tick at ``duration_s``).

    Phases that prepare a later slot (bids, offers, orders, setpoints) are skipped when that slot would start
    at or after the end of the run: nobody would use the result.
    """
    if duration_s <= 0 or duration_s % TICK_S:
        raise ValueError(f"duration_s must be a positive multiple of {TICK_S} s, got {duration_s}")
    for tick in range(0, duration_s + TICK_S, TICK_S):
        for phase in sorted(phases, key=lambda p: (p.offset_s, p)):
            if not _acts_in(phase, tick, duration_s):
                continue
            step = Step(tick + phase.offset_s, phase)
            if phase in PREPARING and _target_start_s(step) >= duration_s:
                continue
            yield step


def _acts_in(phase: Phase, tick: int, duration_s: int) -> bool:
    if tick % int(CADENCE[phase]):
        return False
    return tick > 0 if phase in LOOKING_BACK else tick < duration_s


def grant_times(phases: set[Phase] | frozenset[Phase], duration_s: int) -> list[int]:
    """The distinct times a federate with these phases asks HELICS for (one grant per second it acts at)."""
    return sorted({step.time_s for step in schedule(phases, duration_s)})


def _target_start_s(step: Step) -> int:
    """Start time of the slot or interval that a preparing phase works for."""
    cadence = CADENCE[step.phase]
    if cadence is Cadence.L1:
        return step.l1_slot * L1_PERIOD_S
    if cadence is Cadence.L2:
        return step.l2_slot * L2_PERIOD_S
    return (step.interval + 1) * TICK_S


def local_hour(start: datetime, time_s):
    """Hour of day (0-24, fractional) at ``time_s`` seconds after ``start``; works on numpy arrays too."""
    return (start.hour + start.minute / 60 + start.second / 3600 + time_s / 3600) % 24


def phases_of(kind: str, mode: str) -> frozenset[Phase]:
    """The phases a federate of ``kind`` acts in, in run ``mode``: the one table the federates step through and the
    runner counts steps (and builds external federates' schedules) from."""
    from federates.common.config import ANCILLARY_MODES, P2P_MODES

    p2p, ancillary = mode in P2P_MODES, mode in ANCILLARY_MODES
    table = {
        "feeder": {Phase.PHYSICS},
        "transmission": {Phase.MEASURE},  # right after the feeders' PHYSICS: their states of interval n are out
        "prosumer": {Phase.DISPATCH, Phase.L1_BID} | ({Phase.L1_COMMIT} if p2p else set()),
        "vpp": {Phase.MEASURE, Phase.L1_CLEAR, Phase.SETPOINT}
        | ({Phase.L2_OFFER, Phase.L2_AWARD, Phase.L3_ORDER} if ancillary else set()),
        "iso": {Phase.SETTLE, Phase.L3_SIGNAL, Phase.L2_CLEAR},
        "vpp_market": {Phase.L3_CLEAR},
    }
    if kind not in table:
        raise ValueError(f"unknown federate kind {kind!r}; known: {sorted(table)}")
    return frozenset(table[kind])
