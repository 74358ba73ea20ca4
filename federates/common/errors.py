"""The project's error hierarchy.

Every error message names what is wrong, the offending value and how to fix it.
"""

from __future__ import annotations


class HarmonyError(Exception):
    """Base class of all errors raised on purpose by this project."""


class ConfigError(HarmonyError, ValueError):
    """A scenario or federate configuration is invalid.

    ``problems`` holds every problem found (one line each), so a user fixes them all in one go.
    """

    def __init__(self, problems: list[str] | str, source: str = ""):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        if len(self.problems) == 1:
            super().__init__(head + self.problems[0])
        else:
            body = "\n".join(f"  - {p}" for p in self.problems)
            super().__init__(f"{head}{len(self.problems)} problems:\n{body}")


class WiringError(ConfigError):
    """A HELICS subscription has no (or more than one) matching publication."""


class InfeasibleError(HarmonyError):
    """An optimisation model has no feasible solution."""


class SolverError(HarmonyError):
    """A solver failed or stopped without a usable optimal solution."""


class PhysicsInvariantError(HarmonyError):
    """A physical invariant (power balance, SOC bounds, ...) does not hold."""


class ConvergenceError(HarmonyError):
    """A power flow did not converge, even after the documented retries."""


class SettlementError(HarmonyError):
    """Energy or money does not balance in a market or in the ledger."""
