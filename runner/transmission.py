"""The transmission system of a scenario before the run: which feeder hangs where with which tap, and the
solution for interval 0 (``harmony build`` gives it to the feeders; :mod:`runner.preflight` checks it converges).

Each feeder's substation has a fixed tap, the one that gives the feeder its own source voltage (its master's
``Vsource.source`` pu) at the case's published operating point (the case as given, no feeders):
``tap_pu = source_pu / |V_bus|`` there. Interval 0 is solved before the run with the case's loads at the start's
time-of-day multiplier and each feeder's base-case head power (the builder's solve, no prosumer power) scaled by
the same multiplier; from interval 1 on, the transmission federate solves with the feeders' measured head power.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from federates.common.config import Scenario
from federates.common.errors import ConfigError

if TYPE_CHECKING:
    from federates.transmission.model import TransmissionState
    from runner.build import PlacedFeeder


@dataclass(frozen=True)
class FeederBase:
    """What the builder knows of a feeder before the run: its source voltage and base-case head power."""

    source_pu: float
    p_head_kw: float
    q_head_kvar: float


def base_of(placed: list[PlacedFeeder]) -> dict[str, FeederBase]:
    return {p.feeder.name: FeederBase(p.source_pu, p.base_p_head_kw, p.base_q_head_kvar) for p in placed}


def links(scenario: Scenario, bases: dict[str, FeederBase]) -> list[dict]:
    """Per attached feeder: bus, copies, tap and base-case head power (``TransmissionLink`` fields but the key)."""
    from federates.transmission.model import Attachment, TransmissionModel

    tr = scenario.transmission
    names = [f for f in tr.bus_of if f in bases]
    model = TransmissionModel(tr.case, [Attachment(f, tr.bus_of[f], tr.copies(f)) for f in names],
                              max_iterations=tr.max_iterations)
    published = model.solve({})
    if not published.converged:
        raise ConfigError(f"transmission.case {tr.case}: the case as given does not converge ({published.message})")
    return [dict(feeder=f, bus=tr.bus_of[f], copies=tr.copies(f), tap_pu=bases[f].source_pu / published.v_bus_pu[f],
                 source_pu=bases[f].source_pu, base_p_head_kw=bases[f].p_head_kw,
                 base_q_head_kvar=bases[f].q_head_kvar) for f in names]


def initial_solution(scenario: Scenario, feeder_links: list) -> TransmissionState:
    """The transmission solution for interval 0 (see the module docstring); ``feeder_links``: :func:`links` rows
    (dicts or ``TransmissionLink``)."""
    from federates.transmission.model import Oltc, TransmissionModel, attachments, case_multiplier, first_interval

    tr = scenario.transmission
    rows = [x if isinstance(x, dict) else x.model_dump() for x in feeder_links]
    oltc = Oltc(**tr.oltc.model_dump()) if tr.oltc is not None else None
    model = TransmissionModel(tr.case, attachments(rows, oltc), max_iterations=tr.max_iterations)
    return first_interval(model, {r["feeder"]: (r["base_p_head_kw"], r["base_q_head_kvar"]) for r in rows},
                          case_multiplier(tr.load_shape, scenario.start, 0))


def transmission_problems(scenario: Scenario, bases: dict[str, FeederBase]) -> list[str]:
    """Problems of ``scenario.transmission`` found before launch (buses of the case, convergence of the case as
    given and of interval 0 with the feeders' base-case power x copies), one line each with the fix."""
    from federates.transmission.model import case_buses, load_case

    tr = scenario.transmission
    if tr is None:
        return []
    buses = set(case_buses(load_case(tr.case)))
    problems = [f"transmission.bus_of.{f}: bus {b} is not a bus of {tr.case} (its buses are {min(buses)}-"
                f"{max(buses)}, not all numbers used); give a bus number of the case" for f, b in tr.bus_of.items()
                if b not in buses]
    if problems:
        return problems
    try:
        state = initial_solution(scenario, links(scenario, bases))
    except ConfigError as exc:
        return [f"transmission: {p}" for p in exc.problems]
    if not state.converged:
        power = ", ".join(f"{f}: {tr.copies(f)} x {bases[f].p_head_kw:.1f} kW" for f in tr.bus_of if f in bases)
        return [f"transmission.feeders_per_bus {tr.feeders_per_bus}: the power flow of {tr.case} for the first "
                f"interval does not converge with the feeders' base-case power ({power}): {state.message}; lower "
                "transmission.feeders_per_bus, attach the feeders to other buses, or raise "
                "transmission.max_iterations"]
    return []
