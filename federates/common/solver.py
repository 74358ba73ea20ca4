"""One place that solves Pyomo models with HiGHS and checks the outcome."""

from __future__ import annotations

import pyomo.environ as pyo
from pyomo.opt import SolverStatus, TerminationCondition

from federates.common.errors import InfeasibleError, SolverError

_SOLVER_NAME = "appsi_highs"


def make_solver():
    """Return a HiGHS solver object (Pyomo's APPSI interface, highspy underneath)."""
    solver = pyo.SolverFactory(_SOLVER_NAME)
    if not solver.available(exception_flag=False):
        raise SolverError(
            "HiGHS is not available to Pyomo: install it with `pip install highspy`"
        )
    return solver


def solve(model: pyo.ConcreteModel, *, context: str = "", solver=None) -> pyo.ConcreteModel:
    """Solve ``model`` to optimality with HiGHS, or raise.

    ``context`` (e.g. "prosumer p07 at t=3600 s") is put in the error so the log tells who failed when.
    Raises :class:`InfeasibleError` for infeasible/unbounded models, :class:`SolverError` otherwise.
    """
    solver = solver or make_solver()
    results = solver.solve(model, load_solutions=False)
    term = results.solver.termination_condition
    where = f" ({context})" if context else ""
    if term in (TerminationCondition.infeasible, TerminationCondition.infeasibleOrUnbounded,
                TerminationCondition.unbounded):
        raise InfeasibleError(f"model {model.name!r}{where} is {term}")
    if term != TerminationCondition.optimal or results.solver.status not in (
        SolverStatus.ok, SolverStatus.warning
    ):
        raise SolverError(
            f"HiGHS stopped on model {model.name!r}{where} with status "
            f"{results.solver.status}, termination {term}"
        )
    model.solutions.load_from(results)
    return model
