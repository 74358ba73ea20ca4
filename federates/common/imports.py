"""Heavy libraries imported only by the federates that use them, when they use them.

Every federate is its own process, and all of them start at once on a few cores: each library a process imports
but never uses costs CPU seconds at every start (pandas with pyarrow ~0.4 CPU-s, Pyomo ~0.3, scipy.stats ~0.5).
Two tools keep the imports to what a federate uses:

- :func:`lazy_module`: a module object that imports the real module at its first attribute access, for a module
  used by one code path of a shared module (Pyomo in the P2P market, which only its bilateral LP needs);
- :func:`import_scipy`: import a scipy module without Pyomo's import hook importing scipy.stats as well.

Pyomo registers a post-import callback on ``scipy`` (``pyomo.common.dependencies._finalize_scipy``): once Pyomo
is imported, the first ``import scipy...`` of the process, by anyone (Pyomo's own standard-form compiler
included), also imports scipy.stats, scipy.integrate, scipy.sparse and scipy.spatial, ~0.5 CPU-s that a
prosumer federate never uses. :func:`import_scipy` (and :func:`skip_pyomo_scipy_finalize` alone) clears that
callback before scipy is first imported; the submodules stay importable (scipy loads them on first access).
"""

from __future__ import annotations

import importlib
import sys
import types


class _LazyModule(types.ModuleType):
    """Stands in for module ``name`` until an attribute is read: then imports it and keeps what was read."""

    def __init__(self, name: str):
        super().__init__(name, f"imported at first use: {name}")
        self._lazy_target = name

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__"):  # introspection (copy, pickle, help) must not import
            raise AttributeError(attr)
        value = getattr(importlib.import_module(self._lazy_target), attr)
        setattr(self, attr, value)  # later reads are plain attribute reads
        return value


def lazy_module(name: str) -> types.ModuleType:
    """Module ``name`` if it is imported already, else a stand-in that imports it at its first attribute read.

    ``pyo = lazy_module("pyomo.environ")`` then ``pyo.ConcreteModel()`` imports Pyomo on that call only."""
    return sys.modules.get(name) or _LazyModule(name)


pyomo_environ = lazy_module("pyomo.environ")
"""``pyomo.environ``, imported at its first use: ``from federates.common.imports import pyomo_environ as pyo`` in a
module that only some code paths need Pyomo in (the P2P market: its bilateral LP)."""


def skip_pyomo_scipy_finalize() -> bool:
    """Stop Pyomo importing scipy.stats & co. when scipy is first imported; True if the hook was cleared.

    Only possible while scipy is not imported yet and after Pyomo is (its hook is installed when
    ``pyomo.common.dependencies`` is imported): before Pyomo there is nothing to clear, and a scipy imported
    before Pyomo is finalised as soon as Pyomo is imported. Changes no computed value: only when scipy's
    submodules are imported. Relies on a private attribute of Pyomo's deferred import (Pyomo 6.x); with another
    layout it does nothing (``tests/unit/test_imports.py`` notices)."""
    deps = sys.modules.get("pyomo.common.dependencies")
    indicator = getattr(deps, "scipy_available", None)
    if indicator is None or "scipy" in sys.modules or getattr(indicator, "_module", True) is not None:
        return False
    if not hasattr(indicator, "_callback"):
        return False
    indicator._callback = None
    return True


def import_scipy(name: str) -> types.ModuleType:
    """``importlib.import_module(name)`` for a scipy module (e.g. ``"scipy.special"``), without the scipy.stats
    import Pyomo's hook would add (:func:`skip_pyomo_scipy_finalize`)."""
    skip_pyomo_scipy_finalize()
    return importlib.import_module(name)
