"""One place that solves Pyomo models with HiGHS and checks the outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

from federates.common.errors import InfeasibleError, SolverError

if TYPE_CHECKING:  # Pyomo is imported by the first solve: a federate that never solves never imports it
    import pyomo.environ as pyo

_SOLVER_NAME = "appsi_highs"


def make_solver():
    """Return a HiGHS solver object (Pyomo's APPSI interface, highspy underneath)."""
    import pyomo.environ as pyo

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
    from pyomo.opt import SolverStatus, TerminationCondition

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


def make_persistent_solver():
    """A HiGHS solver for one model whose structure never changes, re-solved after its mutable Params change.

    Pyomo's APPSI interface itself (:func:`make_solver` wraps it for the legacy ``solve`` API, which names every
    variable of the model at every solve): the same HiGHS calls, without the legacy wrapper, and without the
    scans for added or removed variables, constraints, Params and objectives, which a fixed structure never
    has (only :func:`solve_persistent` may be used with it)."""
    from pyomo.contrib.appsi.solvers import Highs

    solver = Highs()
    if not solver.available():
        raise SolverError("HiGHS is not available to Pyomo: install it with `pip install highspy`")
    cfg = solver.update_config
    cfg.check_for_new_or_removed_constraints = cfg.check_for_new_or_removed_vars = False
    cfg.check_for_new_or_removed_params = cfg.check_for_new_objective = False
    cfg.update_constraints = cfg.update_named_expressions = cfg.update_objective = False
    solver.config.load_solution = False
    return solver


def solve_persistent(model: pyo.ConcreteModel, solver, *, context: str = "") -> pyo.ConcreteModel:
    """:func:`solve` with a :func:`make_persistent_solver` solver: to optimality, values loaded into ``model``,
    or raise (the same errors)."""
    from pyomo.contrib.appsi.base import TerminationCondition as Term

    results = solver.solve(model)
    term = results.termination_condition
    where = f" ({context})" if context else ""
    if term in (Term.infeasible, Term.infeasibleOrUnbounded, Term.unbounded):
        raise InfeasibleError(f"model {model.name!r}{where} is {term.name}")
    if term != Term.optimal:
        raise SolverError(f"HiGHS stopped on model {model.name!r}{where} with termination {term.name}")
    results.solution_loader.load_vars()
    return model
