"""Wall time of one 30-min HEMS decision round for 1,000 prosumers vs the same LPs solved directly in highspy.

Compared, on the SAME LPs (the round's HemsData):
  fleet round      ProsumerFleet.plan(): data prep + compiled persistent HiGHS (warm) + extraction + bids
  highspy cold     a fresh highspy.Highs per LP: pass the full LP (matrix + bounds + costs), run, read
  highspy warm     one persistent highspy.Highs per LP already loaded: change bounds/costs, run, read
                   (the solver-only floor: no Pyomo, no data preparation)
  pyomo appsi      Pyomo's APPSI persistent HiGHS with mutable Params (sampled, scaled to the fleet)
Run: python benchmarks/hems_round.py [n_prosumers]
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

import highspy
import numpy as np
from pyomo.contrib.appsi.solvers import Highs as AppsiHighs

from federates.prosumer.devices import (
    BatteryConfig,
    FlexLoadConfig,
    Location,
    ProsumerConfig,
    PvConfig,
    TariffConfig,
    TouPeriod,
)
from federates.prosumer.fleet import ProsumerFleet
from federates.prosumer.hems import _TEMPLATES, CompiledHems, HemsData, build_hems_model, update_hems_params

N_WARM_ROUNDS = 3
APPSI_SAMPLE = 40


def make_fleet(n: int) -> ProsumerFleet:
    tariff = TariffConfig(
        retail_tou=[
            TouPeriod(start_h=0, price_per_kwh=0.15),
            TouPeriod(start_h=7, price_per_kwh=0.3),
            TouPeriod(start_h=17, price_per_kwh=0.45),
            TouPeriod(start_h=21, price_per_kwh=0.3),
        ],
        buyback_price_per_kwh=0.06,
    )
    ev = FlexLoadConfig(name="ev", energy_kwh=10, earliest_h=18, deadline_h=31, p_max_kw=7)
    dw = FlexLoadConfig(name="dw", energy_kwh=1.5, earliest_h=12, deadline_h=18, p_max_kw=1.2)
    prosumers = []
    for i in range(n):
        prosumers.append(
            ProsumerConfig(
                name=f"p{i:04d}",
                load={"daily_kwh": 6 + i % 9},
                pv=PvConfig(kwp=3 + i % 5, azimuth_deg=(135, 180, 225)[i % 3]) if i % 4 else None,
                battery=BatteryConfig(capacity_kwh=(5, 10, 13.5)[i % 3], p_max_kw=(2.5, 5, 5)[i % 3])
                if i % 2
                else None,
                flex_loads=[f for f, on in ((ev, i % 3 == 0), (dw, i % 5 == 0)) if on],
            )
        )
    location = Location(latitude_deg=47.37, longitude_deg=8.54, timezone="Europe/Zurich")
    return ProsumerFleet(prosumers, tariff, location, datetime(2024, 6, 21), n_steps=288 * 2, seed=1)


def _full_lp(solver: CompiledHems, data: HemsData) -> highspy.HighsLp:
    """The complete LP of ``data`` as plain arrays (what a direct highspy user would pass)."""
    tpl = solver.tpl
    col_lo, col_hi, row_lo, row_hi = (a.copy() for a in tpl.battery(data.battery))
    eq, lb_rows = tpl.row_updates(data)
    row_lo[tpl.eq_rows], row_hi[tpl.eq_rows] = eq, eq
    row_lo[tpl.lb_rows] = lb_rows
    cost = tpl.cost.copy()
    cost[tpl.cost_cols] = tpl.cost_updates(data)
    col_lo[tpl.bound_cols], col_hi[tpl.bound_cols] = tpl.bound_updates(data)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = tpl.n_col, tpl.n_row
    lp.col_cost_, lp.col_lower_, lp.col_upper_, lp.row_lower_, lp.row_upper_ = (
        cost,
        col_lo,
        col_hi,
        row_lo,
        row_hi,
    )
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = tpl.a_start, tpl.a_index, tpl.a_value
    return lp


def highspy_cold(lps: list[highspy.HighsLp]) -> tuple[float, list[float]]:
    objs = []
    t0 = time.perf_counter()
    for lp in lps:
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.passModel(lp)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError("baseline LP not optimal")
        np.asarray(h.getSolution().col_value)
        objs.append(h.getInfo().objective_function_value)
    return time.perf_counter() - t0, objs


def highspy_warm(cur: list[HemsData], lps_prev: list[highspy.HighsLp], solvers: list[CompiledHems]) -> float:
    """Persistent highspy objects at the previous round; time only update + run + read."""
    hs, updates = [], []
    for lp, s, d in zip(lps_prev, solvers, cur, strict=True):
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("presolve", "off")
        h.passModel(lp)
        h.run()
        hs.append(h)
        tpl = s.tpl
        updates.append((tpl, *tpl.row_updates(d), tpl.cost_updates(d), *tpl.bound_updates(d)))
    inf = np.full(max(len(u[2]) for u in updates), highspy.kHighsInf)
    t0 = time.perf_counter()
    for h, (tpl, eq, lb_rows, cost, lo, hi) in zip(hs, updates, strict=True):
        h.changeRowsBounds(len(eq), tpl.eq_rows, eq, eq)
        h.changeRowsBounds(len(lb_rows), tpl.lb_rows, lb_rows, inf[: len(lb_rows)])
        h.changeColsCost(len(cost), tpl.cost_cols, cost)
        h.changeColsBounds(len(lo), tpl.bound_cols, lo, hi)
        h.run()
        np.asarray(h.getSolution().col_value)
    return time.perf_counter() - t0


def appsi_sample(prev: list[HemsData], cur: list[HemsData]) -> float:
    """Seconds per LP with Pyomo APPSI persistent HiGHS and mutable Params (warm re-solve)."""
    times = []
    for d0, d1 in list(zip(prev, cur, strict=True))[:APPSI_SAMPLE]:
        m = build_hems_model(d0)
        s = AppsiHighs()
        s.highs_options = {"presolve": "off"}
        s.solve(m)
        t0 = time.perf_counter()
        update_hems_params(m, d1)
        res = s.solve(m)
        s.get_primals()
        times.append(time.perf_counter() - t0)
        if res.termination_condition.name != "optimal":
            raise RuntimeError("APPSI LP not optimal")
    return float(np.mean(times))


def main(n: int) -> dict:
    t0 = time.perf_counter()
    fleet = make_fleet(n)
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    fleet.plan(0.0, 1)
    t_first = time.perf_counter() - t0
    rounds = []
    for k in range(1, N_WARM_ROUNDS + 1):
        for j in range(6):
            fleet.dispatch((k - 1) * 1800 + j * 300, {})
        prev = fleet.hems_inputs((k - 1) * 1800.0, k)
        cur = fleet.hems_inputs(k * 1800.0, k + 1)
        t0 = time.perf_counter()
        fleet.plan(k * 1800.0, k + 1)
        rounds.append(time.perf_counter() - t0)
    solvers = [st.solver for st in fleet._states]
    lps_cur = [_full_lp(s, d) for s, d in zip(solvers, cur, strict=True)]
    lps_prev = [_full_lp(s, d) for s, d in zip(solvers, prev, strict=True)]
    t_cold, objs = highspy_cold(lps_cur)
    t_warm = highspy_warm(cur, lps_prev, solvers)
    t_appsi = appsi_sample(prev, cur) * n
    t_round = float(np.mean(rounds))
    fig = {
        "n_prosumers": n,
        "lp_cols": int(np.mean([s.tpl.n_col for s in solvers])),
        "lp_rows": int(np.mean([s.tpl.n_row for s in solvers])),
        "structures_compiled": len(_TEMPLATES),
        "fleet_init_s": round(t_init, 3),
        "first_round_cold_s": round(t_first, 3),
        "fleet_round_s": round(t_round, 3),
        "highspy_cold_s": round(t_cold, 3),
        "highspy_warm_s": round(t_warm, 3),
        "pyomo_appsi_est_s": round(t_appsi, 2),
        "ratio_round_vs_highspy_cold": round(t_round / t_cold, 2),
        "ratio_round_vs_highspy_warm": round(t_round / t_warm, 2),
        "fallbacks": fleet.fallbacks,
    }
    print(f"HEMS decision round, {n} prosumers, LP ~{fig['lp_cols']} cols x {fig['lp_rows']} rows, 48 slots")
    print(f"{'what':<42}{'seconds':>10}")
    for label, key in [
        ("fleet set-up (profiles)", "fleet_init_s"),
        ("first round (compile + cold solves)", "first_round_cold_s"),
        (f"fleet round, mean of {N_WARM_ROUNDS} (warm)", "fleet_round_s"),
        ("highspy direct, cold (same LPs)", "highspy_cold_s"),
        ("highspy direct, warm (solver floor)", "highspy_warm_s"),
        (f"Pyomo APPSI mutable Params (est. from {APPSI_SAMPLE})", "pyomo_appsi_est_s"),
    ]:
        print(f"{label:<42}{fig[key]:>10.3f}")
    print(
        f"fleet round / highspy cold = {fig['ratio_round_vs_highspy_cold']}, "
        f"/ highspy warm = {fig['ratio_round_vs_highspy_warm']}; fallbacks {fleet.fallbacks}"
    )
    print(json.dumps(fig))
    return fig


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
