"""Feeder physics federate: applies prosumer injections to OpenDSS and publishes the power-flow state.

Every 5 minutes (phase PHYSICS): read net injections (and the VPP's community battery power, from its setpoints;
with a transmission system, the source voltage published for this interval) -> set loads and source -> solve ->
record -> publish state. The community battery is a constant-power element at its bus
(``FeederModel`` injector), so its power is in the power flow, in ``loads_kw`` and in the published
``community_battery_kw`` that the ISO adds to the members' metered delivery.
A failed power flow (after the model's one retry) is recorded as it is (converged False, NaN figures) and,
with ``on_nonconvergence: continue``, published flagged (converged False, the last converged figures, see
``FeederStateMsg``); with ``stop`` the feeder raises ``ConvergenceError`` naming itself.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

from federates.common.errors import ConvergenceError
from federates.common.helics_shell import Shell
from federates.common.messages import (
    FeederStateMsg,
    Injections,
    L3Result,
    Setpoints,
    TransmissionVoltages,
    ViolationMsg,
)
from federates.common.timebase import TICK_S, Phase, phases_of
from federates.common.wiring import FeederFederate, load_federate_config
from federates.feeder.model import FeederModel, FeederState
from federates.feeder.shapes import background_multiplier

log = logging.getLogger(__name__)


def main(config_path: str) -> None:
    cfg: FeederFederate = load_federate_config(config_path, FeederFederate)
    feeder = cfg.feeder
    tie = cfg.tie_vpp is not None
    battery_key = f"vpp_{feeder.name}/setpoints"
    battery = feeder.vpp.community_battery is not None and battery_key in cfg.runtime.subscriptions
    buses = ([feeder.tie_bus] if tie else []) + ([feeder.vpp.community_battery.bus] if battery else [])
    model = FeederModel(feeder.master, max_iterations=feeder.max_iterations,
                        max_control_iterations=feeder.max_control_iterations, strict=feeder.strict,
                        v_min_pu=feeder.v_min_pu, v_max_pu=feeder.v_max_pu, injectors=buses)
    battery_kw: dict[int, float] = {}
    model.place_prosumers(list(cfg.prosumer_loads.values()), seed=cfg.runtime.seed)
    tie_credit: dict[int, float] = {}
    prosumer_of = {load: p for p, load in cfg.prosumer_loads.items()}
    injections = dict.fromkeys(cfg.prosumer_loads, 0.0)
    key = f"{cfg.runtime.name}/state"
    source = _Source(cfg, model)
    with Shell(cfg.runtime) as shell:
        for step in shell.steps(phases_of("feeder", cfg.runtime.mode)):
            source.apply(shell, step.interval)
            for sub in cfg.injection_keys:
                msg = shell.read(sub, Injections)
                if msg is not None:
                    injections.update(msg.p_kw)
            model.set_base_multiplier(background_multiplier(cfg.runtime.start, step.tick_start_s))
            model.set_injections({cfg.prosumer_loads[p]: v for p, v in injections.items()})
            tie_kw = 0.0
            if tie:
                result = shell.read("vpp_market/results", L3Result)
                if result is not None:
                    tie_credit[result.interval] = result.credit_kwh.get(cfg.tie_vpp, 0.0)
                # energy credited to our VPP came over the tie from the seller's feeder (and vice versa)
                tie_kw = tie_credit.pop(step.interval, 0.0) * 3600.0 / TICK_S
                model.set_injections({model.injectors[0]: tie_kw})
            cb_kw = 0.0
            if battery:
                sp = shell.read(battery_key, Setpoints)
                if sp is not None:
                    battery_kw[sp.interval] = sp.community_battery_kw
                cb_kw = battery_kw.pop(step.interval, 0.0)
                model.set_injections({model.injectors[-1]: cb_kw})
            state = model.solve()
            members_p_kw = sum(injections.values())
            loads_kw = model.pc_power_kw() if state.converged else float("nan")
            _record(shell, feeder.name, state, members_p_kw, loads_kw, (tie_kw, cb_kw), prosumer_of, model.source_pu)
            if not state.converged:
                log.warning("t=%s s: power flow of %s failed: %s", step.tick_start_s, feeder.name, state.message)
                if feeder.on_nonconvergence == "stop":
                    raise ConvergenceError(f"feeder {feeder.name} at t={step.tick_start_s} s: {state.message} "
                                           "(set on_nonconvergence: continue to flag the step and go on)")
                state = _flagged(state, model.last_converged)
            shell.publish(key, _state_message(step, feeder.name, state, members_p_kw, prosumer_of, cb_kw),
                          target=step.interval)


class _Source:
    """T&D: the source voltage of each interval, from the transmission federate's voltages published for it (the
    pre-run solution's for interval 0); a missing one keeps the last applied. Without a transmission system the
    master's own source voltage stays."""

    def __init__(self, cfg: FeederFederate, model: FeederModel):
        self.key, self.name, self.model = cfg.transmission_key, cfg.feeder.name, model
        self.pending: dict[int, float] = {}
        if self.key is not None and cfg.v_source_pu_initial is not None:
            self.pending[0] = cfg.v_source_pu_initial

    def apply(self, shell: Shell, interval: int) -> None:
        if self.key is None:
            return
        msg = shell.read(self.key, TransmissionVoltages)
        if msg is not None and self.name in msg.v_source_pu:
            self.pending[msg.interval] = msg.v_source_pu[self.name]
        if interval in self.pending:
            self.model.set_source_pu(self.pending.pop(interval))


def _record(shell: Shell, feeder: str, state: FeederState, members_p_kw: float, loads_kw: float,
            injectors_kw: tuple[float, float], prosumer_of: dict, v_source_pu: float) -> None:
    t = shell.time_s - Phase.PHYSICS.offset_s
    tie_kw, battery_kw = injectors_kw
    shell.recorder.add("feeder_steps", time=t, feeder=feeder, converged=state.converged,
                       v_min_pu=state.v_min_pu, v_max_pu=state.v_max_pu, p_head_kw=state.p_head_kw,
                       q_head_kvar=state.q_head_kvar, losses_kw=state.losses_kw,
                       max_loading_pct=state.max_loading_pct, n_violations=len(state.violations),
                       members_p_kw=members_p_kw, loads_kw=loads_kw, tie_kw=tie_kw, community_battery_kw=battery_kw,
                       message=state.message, v_source_pu=v_source_pu)
    shell.recorder.add_rows("voltages", [(t, feeder, prosumer_of[load], v) for load, v in state.v_pu.items()
                                         if load in prosumer_of])


def _flagged(failed: FeederState, last: FeederState | None) -> FeederState:
    """What to publish for a failed power flow: converged False with the figures of the last converged step
    (placeholders before any: no voltages, 1 pu, zero powers), no violations, and why in ``message``."""
    if last is None:
        return replace(failed, v_pu={}, bus_v_pu={}, v_min_pu=1.0, v_max_pu=1.0, p_head_kw=0.0, q_head_kvar=0.0,
                       losses_kw=0.0, max_loading_pct=0.0, violations=[],
                       message=failed.message + "; no converged step yet: figures are placeholders")
    return replace(last, converged=False, violations=[],
                   message=failed.message + "; figures are those of the last converged step")


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _state_message(step, feeder: str, state: FeederState, members_p_kw: float, prosumer_of: dict,
                   battery_kw: float = 0.0):
    """The wire payload; never NaN (FeederStateMsg refuses it, so a bug here fails in the feeder, not in its
    subscribers)."""
    return FeederStateMsg(
        time_s=step.time_s, interval=step.interval, feeder=feeder, converged=state.converged,
        v_pu={prosumer_of[load]: v for load, v in state.v_pu.items() if load in prosumer_of and math.isfinite(v)},
        v_min_pu=state.v_min_pu, v_max_pu=state.v_max_pu, p_head_kw=state.p_head_kw,
        q_head_kvar=state.q_head_kvar, losses_kw=state.losses_kw, max_loading_pct=_finite(state.max_loading_pct),
        members_p_kw=members_p_kw, community_battery_kw=battery_kw, message=state.message,
        violations=[ViolationMsg(kind=v.kind, element=v.element, value=v.value, limit=v.limit,
                                 prosumer=prosumer_of.get(v.element)) for v in state.violations],
    )
