"""The community battery a VPP runs on its feeder (issue #15): its state of charge, its limits over one 5-minute
interval, its dispatch and the settlement of its energy with the utility. Plain logic, no HELICS.

Sign convention: ``p_kw`` > 0 is discharging (power INJECTED INTO THE NETWORK at the battery's bus), < 0
charging. The state of charge moves by ``-p dt / eta_d`` when discharging and ``-p dt eta_c`` when charging.

Dispatch of interval n (decided at the SETPOINT phase of n-1, see docs/timing.md):

    p = clamp(baseline + delivery + corrective, -charge limit, discharge limit)

``baseline``: the slot's baseline chosen by the offer model (:mod:`federates.vpp.ancillary_bidding`; 0 when the
VPP made no offer); ``delivery``: its share of what the VPP asks for its ancillary awards and Layer III trades;
``corrective``: only in intervals without awards (it would otherwise count as delivery), the full remaining
power charging right after the VPP's guard capped a member's export for over-voltage, discharging right after
it capped an import for under-voltage (and in any interval the battery is not asked to deliver up, resp. down,
in those conditions). The limits keep the state of charge in [0, kwh] over the interval.

Settlement (item ``community_battery_energy``, between the VPP and the utility, like a collective
self-consumption scheme): per interval, the energy the battery draws while the members together export is
charged at the export credit (it is the members' surplus, which the utility credited them), the rest at the
retail price; the energy it discharges while the members together import is credited at the retail price (it
displaces their imports, which the utility billed them), the rest at the export credit. The VPP passes this
cash to its members with its other income (:mod:`runner.ledger`), and the change of the battery's stored
energy is theirs too (:mod:`runner.storage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from federates.common.config import CommunityBatteryConfig

TICK_H = 300 / 3600


@dataclass
class CommunityBattery:
    config: CommunityBatteryConfig
    soc_kwh: float = field(init=False)              # after the last dispatched interval
    dispatched: dict[int, float] = field(default_factory=dict)   # interval -> p_kw

    def __post_init__(self):
        self.soc_kwh = self.config.soc_init_frac * self.config.kwh

    def limits_kw(self, soc_kwh: float | None = None, dt_h: float = TICK_H) -> tuple[float, float]:
        """(discharge, charge) kW the battery can hold for ``dt_h`` from ``soc_kwh`` (both >= 0)."""
        c, soc = self.config, self.soc_kwh if soc_kwh is None else soc_kwh
        return (max(0.0, min(c.kw, soc * c.eta_discharge / dt_h)),
                max(0.0, min(c.kw, (c.kwh - soc) / (c.eta_charge * dt_h))))

    def headroom_kw(self, baseline_kw: float) -> tuple[float, float]:
        """(up, down) kW the battery can move away from ``baseline_kw`` over the next interval."""
        dis, ch = self.limits_kw()
        return max(0.0, dis - baseline_kw), max(0.0, ch + baseline_kw)

    def dispatch(self, interval: int, p_kw: float) -> float:
        """Commit interval ``interval`` at ``p_kw`` clamped to the limits; update the state of charge and return
        the power committed."""
        dis, ch = self.limits_kw()
        p = min(max(p_kw, -ch), dis)
        self.soc_kwh = self.next_soc(self.soc_kwh, p)
        self.dispatched[interval] = p
        return p

    def next_soc(self, soc_kwh: float, p_kw: float, dt_h: float = TICK_H) -> float:
        c = self.config
        drawn = p_kw / c.eta_discharge if p_kw > 0 else p_kw * c.eta_charge
        return min(max(soc_kwh - drawn * dt_h, 0.0), c.kwh)

    def projected_soc(self, baseline_kw: float, up_kw: float, down_kw: float, hours: float) -> tuple[float, float]:
        """(lowest, highest) state of charge after ``hours`` at ``baseline_kw`` with up to ``up_kw`` / ``down_kw``
        deployed around it (the bounds the offer model uses for a slot that starts later)."""
        low = self.next_soc(self.soc_kwh, max(baseline_kw + up_kw, 0.0), hours)
        high = self.next_soc(self.soc_kwh, min(baseline_kw - down_kw, 0.0), hours)
        return min(low, self.soc_kwh), max(high, self.soc_kwh)


def energy_settlement(p_kw: float, members_p_kw: float, retail_per_kwh: float, export_per_kwh: float,
                      dt_h: float = TICK_H) -> tuple[float, float]:
    """(kWh, $ received by the VPP, + = credited) for one interval of the battery at ``p_kw`` while the members
    together inject ``members_p_kw`` (rule in the module docstring)."""
    if p_kw < 0:
        local = min(-p_kw, max(members_p_kw, 0.0))
        return -p_kw * dt_h, -(local * export_per_kwh + (-p_kw - local) * retail_per_kwh) * dt_h
    local = min(p_kw, max(-members_p_kw, 0.0))
    return p_kw * dt_h, (local * retail_per_kwh + (p_kw - local) * export_per_kwh) * dt_h
