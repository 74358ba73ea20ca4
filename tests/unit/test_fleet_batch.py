"""The fleet prepares, writes and reads all its HEMS LPs at once: it must give bit for bit what solving each
prosumer's LP on its own gives (inputs built one prosumer at a time, the LP pushed and read by CompiledHems.solve,
the bid from make_bid), over a day with commitments, setpoints and several LP structures."""

from __future__ import annotations

import numpy as np
from test_fleet import LOC, START, TARIFF, _prosumers, _setpoints

from federates.prosumer.bidding import make_bid
from federates.prosumer.fleet import ProsumerFleet, _horizon_windows, _key, _occurrences
from federates.prosumer.hems import CompiledHems, HemsData

_EPS = 1e-9


def _reference_data(fleet: ProsumerFleet, i: int, t_s: float, slot: int) -> HemsData:
    """Prosumer ``i``'s LP data computed on its own, scalar by scalar (the definitions of fleet.py)."""
    st, h, dt = fleet._states[i], fleet.horizon_slots, fleet.slot_h
    b = st.battery
    soc, k, hs_s = float(fleet.soc_kwh[i]), int(t_s // fleet.slot_s), slot * fleet.slot_s
    while k * fleet.slot_s < hs_s:
        span_h = (min((k + 1) * fleet.slot_s, hs_s) - max(k * fleet.slot_s, t_s)) / 3600.0
        p = st.plan_b_kw[k] if span_h > 0 else 0.0
        soc -= span_h * (p / b.eta_discharge if p > 0 else p * b.eta_charge)
        k += 1
    soc0 = float(np.clip(soc, b.soc_min_kwh, b.soc_max_kwh))
    reach = soc0 + b.p_max_kw * b.eta_charge * dt * np.arange(1, h + 1)
    nf = len(st.cfg.flex_loads)
    fmax, new, rmax, rem0 = np.zeros((nf, h)), np.zeros((nf, h)), np.zeros((nf, h)), np.zeros(nf)
    now_h, hs_h = fleet.h0 + t_s / 3600.0, fleet.h0 + slot * dt
    for f, cfg in enumerate(st.cfg.flex_loads):
        rem_kwh, end_h = float(fleet.flex_rem_kwh[i, f]), float(fleet.flex_end_h[i, f])  # end_h NaN: none open
        fmax[f], new[f], rmax[f] = _horizon_windows(_key(cfg), round(hs_h, 9), h, dt)
        for start, end in _occurrences(cfg, hs_h, hs_h + _EPS):
            if start < hs_h - _EPS:
                owed = rem_kwh if end_h == end else cfg.energy_kwh
                ahead = st.plan_flex_kw[f, int(t_s // fleet.slot_s)] * max(0.0, hs_h - max(now_h, start))
                rem0[f] = np.clip(owed - ahead, 0.0, cfg.p_max_kw * (end - hs_h))
    s, q = slice(slot, slot + h), slice(2 * slot, 2 * (slot + h))
    reward = np.zeros(h)
    reward[0] = fleet.reserve_value_per_kw
    return HemsData(
        slot_h=dt, battery=b, net_load_kw=fleet.forecast_net_slot_kw[i, s] - fleet.p2p_kwh[i, s] / dt,
        retail_price_per_kwh=fleet.retail_slot[s], buyback_price_per_kwh=fleet.export_slot[s], soc_init_kwh=soc0,
        soc_floor_kwh=np.maximum(b.soc_min_kwh, np.minimum(st.floor_kwh, reach)),
        reserve_up_award_kw=fleet.award_up_kw[i, q].reshape(h, 2).max(axis=1),
        reserve_down_award_kw=fleet.award_dn_kw[i, q].reshape(h, 2).max(axis=1), reserve_value_per_kw=reward,
        flex_max_kw=fmax, flex_new_kwh=new, flex_rem_max_kwh=rmax, flex_rem_init_kwh=rem0,
        terminal_value_per_kwh=b.eta_discharge * fleet.terminal_retail if b.p_max_kw else 0.0,
        demand_charge_per_kw=fleet.tariff.demand_charge_per_kw, peak_so_far_kw=float(fleet.peak_import_kw[i]))


def _exact(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def _unequal_efficiencies():
    """test_fleet's prosumers, every battery charging and discharging at different efficiencies and starting
    below its resilience reserve (so the SOC floor ramps up at the charging rate)."""
    update = {"eta_charge": 0.9, "eta_discharge": 0.96, "soc_init_frac": 0.1, "reserve_frac": 0.3}
    return [p.model_copy(update={"battery": p.battery.model_copy(update=update)}) if p.battery else p
            for p in _prosumers()]


def test_batched_plans_equal_one_prosumer_at_a_time_bit_for_bit():
    # 08:00-20:00: PV charges the batteries, and the 17:00 price step falls inside the day
    fleet = ProsumerFleet(_unequal_efficiencies(), TARIFF, LOC, START.replace(hour=8), n_steps=144, seed=5)
    solvers: dict[int, CompiledHems] = {}
    rng = np.random.default_rng(3)
    checked = 0
    for step in range(-1, fleet.n_steps):
        t_s, slot = (0.0, 0) if step < 0 else (step * 300.0 + 3, step // 6 + 1)
        if step >= 0:  # as the federate: dispatch at the tick, plan at +3 s
            fleet.dispatch(step * 300.0, _setpoints(step, rng))
        if step < 0 or step % 6 == 0:
            want = []
            for i, st in enumerate(fleet._states):
                data = _reference_data(fleet, i, t_s, slot)
                solver = solvers.setdefault(i, CompiledHems(data))
                plan = solver.solve(data)
                want.append((plan, make_bid(st.cfg.name, slot, plan, slot_h=fleet.slot_h,
                                            retail_per_kwh=float(fleet.retail_slot[slot]),
                                            buyback_per_kwh=float(fleet.export_slot[slot]),
                                            p2p_buy_kw=float(fleet.p2p_kwh[i, slot]) / fleet.slot_h,
                                            p2p_enabled=True, vpp_enabled=True)))
            got = fleet.plan(t_s, slot)
            s = slice(slot, slot + fleet.horizon_slots)
            for i, (plan, bid) in enumerate(want):
                st = fleet._states[i]
                assert got[i] == bid, st.cfg.name
                assert _exact(st.plan_b_kw[s], plan.battery_kw)
                assert _exact(st.plan_g_kw[s], plan.export_kw - plan.import_kw - fleet.p2p_kwh[i, s] / fleet.slot_h)
                assert _exact(st.plan_flex_kw[:, s], plan.flex_kw)
                checked += 1
            if step >= 0:
                fleet.commit_p2p(slot, {b.prosumer: 0.5 * (b.buy_kwh - b.sell_kwh) for b in got})
                for half in (2 * slot, 2 * slot + 1):
                    fleet.commit_reserve(half, {b.prosumer: 0.5 * b.flex_up_kw for b in got},
                                         {b.prosumer: 0.5 * b.flex_down_kw for b in got})
    assert checked == 25 * len(fleet._states)
    assert len({id(s.tpl) for s in solvers.values()}) >= 3  # several LP structures in one fleet
    assert fleet.fallbacks == 0
