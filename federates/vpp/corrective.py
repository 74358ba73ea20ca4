"""Corrective signals: how a VPP keeps its feeder within voltage limits using its members.

Rule (documented in docs/layers.md): after each power flow, every member whose service voltage is above
``v_max_pu - margin_pu`` while exporting gets an export cap of ``shrink`` times its current export (repeated
steps tighten it further); every member below ``v_min_pu + margin_pu`` while importing gets an import cap the
same way. A member whose voltage has been back inside ``[v_min + release, v_max - release]`` has its cap
relaxed per step (``cap * relax + relax_kw``) and removed once it exceeds ``release_above_kw`` (more than any
house exports), so caps ramp back slowly instead of oscillating. Prosumers obey caps with their battery,
then by curtailing PV (export) or deferring flexible load within its window (import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Action(NamedTuple):
    """A change of a member's caps (tens of thousands a day on a large feeder: a named tuple, cheap to make)."""

    prosumer: str
    kind: str            # "cap_export" | "cap_import" | "relax" | "release"
    v_pu: float
    max_export_kw: float | None
    max_import_kw: float | None


@dataclass
class CorrectiveController:
    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    margin_pu: float = 0.01
    release_pu: float = 0.02
    shrink: float = 0.5
    relax: float = 1.25
    relax_kw: float = 0.25
    release_above_kw: float = 15.0
    export_cap_kw: dict[str, float] = field(default_factory=dict)
    import_cap_kw: dict[str, float] = field(default_factory=dict)

    def update(self, v_pu: dict[str, float], p_kw: dict[str, float]) -> list[Action]:
        """Update caps from the latest voltages and net injections (+ = export); return what changed."""
        actions = []
        high, low = self.v_max_pu - self.margin_pu, self.v_min_pu + self.margin_pu
        calm_low, calm_high = self.v_min_pu + self.release_pu, self.v_max_pu - self.release_pu
        for member, v in v_pu.items():
            p = p_kw.get(member, 0.0)
            if v > high and p > 0.0:
                self.export_cap_kw[member] = min(self.export_cap_kw.get(member, p), p) * self.shrink
                actions.append(self._action(member, "cap_export", v))
            elif v < low and p < 0.0:
                self.import_cap_kw[member] = min(self.import_cap_kw.get(member, -p), -p) * self.shrink
                actions.append(self._action(member, "cap_import", v))
            elif calm_low <= v <= calm_high:
                actions.extend(self._relax(member, v))
        return actions

    def _relax(self, member: str, v: float) -> list[Action]:
        changed = []
        for caps in (self.export_cap_kw, self.import_cap_kw):
            if member not in caps:
                continue
            caps[member] = caps[member] * self.relax + self.relax_kw
            if caps[member] > self.release_above_kw:
                del caps[member]
                changed.append(self._action(member, "release", v))
            else:
                changed.append(self._action(member, "relax", v))
        return changed

    def _action(self, member: str, kind: str, v: float) -> Action:
        return Action(member, kind, v, self.export_cap_kw.get(member), self.import_cap_kw.get(member))
