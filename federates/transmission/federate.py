"""Transmission federate (T&D co-simulation): every 5 minutes, right after the feeders' power flow of interval n,
read each attached feeder's head power -> solve the transmission power flow for interval n+1 -> record -> publish
each feeder's source voltage for n+1 (``transmission/voltages``, target n+1).

The solution for n+1 uses the feeders' head power of n (the latest measured; a one-interval lag, the usual loose
coupling of T&D co-simulation) and the case's load at the time of n+1. Interval 0's solution was made before the
run (``runner.transmission``; the feeders got it in their configs) and is recorded here at the first step, so the
``transmission`` tables hold the solution every feeder applied in every interval. A power flow that fails is
recorded as it is (converged False, NaN voltages) and published flagged with the last converged voltages.
"""

from __future__ import annotations

import logging
import math

from federates.common.helics_shell import Shell
from federates.common.messages import FeederStateMsg, TransmissionVoltages
from federates.common.timebase import TICK_S, phases_of
from federates.common.wiring import TransmissionFederate, load_federate_config
from federates.transmission.model import (
    Oltc,
    TransmissionModel,
    TransmissionState,
    attachments,
    case_multiplier,
    first_interval,
)

log = logging.getLogger(__name__)

def main(config_path: str) -> None:
    cfg: TransmissionFederate = load_federate_config(config_path, TransmissionFederate)
    rt, tr = cfg.runtime, cfg.transmission
    oltc = Oltc(**tr.oltc.model_dump()) if tr.oltc is not None else None
    model = TransmissionModel(tr.case, attachments([x.model_dump() for x in cfg.links], oltc),
                              max_iterations=tr.max_iterations)
    m0 = case_multiplier(tr.load_shape, rt.start, 0)
    last = first_interval(model, {x.feeder: (x.base_p_head_kw, x.base_q_head_kvar) for x in cfg.links}, m0)
    head = {x.feeder: (x.base_p_head_kw * m0, x.base_q_head_kvar * m0) for x in cfg.links}
    with Shell(rt) as shell:
        for step in shell.steps(phases_of("transmission", cfg.runtime.mode)):
            if step.interval == 0:
                _record(shell, model, 0, m0, last)
            for x in cfg.links:
                state = shell.read(x.state_key, FeederStateMsg)
                if state is not None and state.converged:  # a flagged state carries old figures: keep ours
                    head[x.feeder] = (state.p_head_kw, state.q_head_kvar)
            target = step.interval + 1
            if target * TICK_S >= rt.duration_s:
                continue  # the run ends with interval n: nobody would apply a solution for n+1
            m = case_multiplier(tr.load_shape, rt.start, target * TICK_S)
            solved = model.solve(head, m)
            _record(shell, model, target, m, solved)
            if solved.converged:
                last = solved
            else:
                log.warning("t=%s s: %s; publishing the last converged voltages", step.time_s, solved.message)
            shell.publish(cfg.voltages_key, _message(step.time_s, target, tr.case, last, solved), target=target)


def _message(time_s: float, target: int, case: str, last: TransmissionState,
             solved: TransmissionState) -> TransmissionVoltages:
    """The voltages of ``last`` (the latest converged solution), flagged when ``solved`` failed."""
    return TransmissionVoltages(time_s=time_s, interval=target, case=case, converged=solved.converged,
                                v_source_pu=last.v_source_pu, bus_v_pu=last.v_bus_pu, bus_angle_deg=last.angle_deg_of,
                                losses_mw=last.losses_mw,
                                message=solved.message if solved.converged else
                                f"{solved.message}; voltages of the last converged solution")


def _record(shell: Shell, model: TransmissionModel, interval: int, multiplier: float,
            state: TransmissionState) -> None:
    """Rows of ``transmission`` (every bus) and ``transmission_steps`` for the interval the solution is for."""
    t = interval * TICK_S
    at_bus: dict[int, list[str]] = {}
    for a in model.attachments:
        at_bus.setdefault(a.bus, []).append(a.feeder)
    for k, bus in enumerate(state.bus):
        shell.recorder.add("transmission", time=t, bus=int(bus), v_pu=float(state.v_pu[k]),
                           angle_deg=float(state.angle_deg[k]), p_load_mw=float(state.p_load_mw[k]),
                           q_load_mvar=float(state.q_load_mvar[k]), feeders_p_mw=float(state.feeders_p_mw[k]),
                           feeders_q_mvar=float(state.feeders_q_mvar[k]), feeder=" ".join(at_bus.get(int(bus), [])))
    if state.converged:
        for a in model.attachments:
            shell.recorder.add("substations", time=t, feeder=a.feeder, bus=a.bus, v_bus_pu=state.v_bus_pu[a.feeder],
                               tap_step=state.tap_step.get(a.feeder, 0), v_source_pu=state.v_source_pu[a.feeder])
    v_min, v_max = (state.v_min_pu, state.v_max_pu) if state.converged else (math.nan, math.nan)
    shell.recorder.add("transmission_steps", time=t, case=model.name, converged=state.converged,
                       iterations=state.iterations, load_multiplier=multiplier, p_gen_mw=state.p_gen_mw,
                       q_gen_mvar=state.q_gen_mvar, p_load_mw=float(state.p_load_mw.sum()),
                       feeders_p_mw=float(state.feeders_p_mw.sum()), shunt_mw=state.shunt_mw,
                       losses_mw=state.losses_mw, v_min_pu=v_min, v_max_pu=v_max, message=state.message)
