"""The persistent HiGHS solver of a fixed-structure model: Param changes reach HiGHS, outcomes are checked."""

from __future__ import annotations

import pyomo.environ as pyo
import pytest

from federates.common.errors import InfeasibleError
from federates.common.solver import make_persistent_solver, solve, solve_persistent


def _model() -> pyo.ConcreteModel:
    """max x + 2 y  s.t.  x + y <= cap,  y <= y_max,  x >= need  (cap, y_max, need mutable)."""
    m = pyo.ConcreteModel(name="tiny")
    m.cap, m.y_max, m.need = (pyo.Param(mutable=True, initialize=v) for v in (4.0, 1.0, 0.0))
    m.x, m.y = pyo.Var(within=pyo.NonNegativeReals), pyo.Var(within=pyo.NonNegativeReals)
    m.c1 = pyo.Constraint(expr=m.x + m.y <= m.cap)
    m.c2 = pyo.Constraint(expr=m.y <= m.y_max)
    m.c3 = pyo.Constraint(expr=m.x >= m.need)
    m.obj = pyo.Objective(expr=m.x + 2 * m.y, sense=pyo.maximize)
    return m


def test_persistent_solver_sees_every_param_change_and_checks_the_outcome():
    m, solver = _model(), make_persistent_solver()
    solve_persistent(m, solver)
    assert (pyo.value(m.x), pyo.value(m.y)) == (3.0, 1.0)
    m.cap.set_value(10.0)
    m.y_max.set_value(4.0)
    solve_persistent(m, solver)
    assert (pyo.value(m.x), pyo.value(m.y)) == (6.0, 4.0)
    m.need.set_value(20.0)  # x >= 20 with x + y <= 10
    with pytest.raises(InfeasibleError, match="tiny"):
        solve_persistent(m, solver, context="test")
    m.need.set_value(1.0)
    solve_persistent(m, solver)
    fresh = _model()
    for p, v in (("cap", 10.0), ("y_max", 4.0), ("need", 1.0)):
        getattr(fresh, p).set_value(v)
    solve(fresh)  # the legacy path on a fresh model: the same optimum
    assert (pyo.value(m.x), pyo.value(m.y)) == (pyo.value(fresh.x), pyo.value(fresh.y)) == (6.0, 4.0)
