"""The Python API: run, compare and open co-simulations from a notebook or a script.

    from runner import api

    res = api.run("configs/scenarios/default.yaml", out="runs/demo", hours=6, seed=7, mode="full",
                  overrides={"market.mechanism": "bilateral"}, force=True)
    res.kpis["total_cost"]            # the figures of kpis.json, as a dict
    trades = res.table("trades")      # a results table as a typed pandas DataFrame
    table = api.compare("configs/scenarios/default.yaml", out="runs/demo-compare", hours=6)
    res = api.load("runs/demo")       # a finished run, opened again

The command line (``harmony run``/``compare``) does exactly this; errors are the same exceptions:
:class:`~federates.common.errors.ConfigError` for bad input, :class:`~federates.common.errors.HarmonyError`
when the federation failed (the message names the federate and its cause).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from federates.common.config import Scenario, load_scenario
from federates.common.errors import ConfigError
from federates.common.tables import TABLES
from runner.results import typed_table

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = REPO_ROOT / "configs" / "scenarios" / "default.yaml"


def scenario(path: str | Path | None = None, *, hours: float | None = None, seed: int | None = None,
             mode: str | None = None, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Load and validate a scenario file (default: the default scenario) with overrides by dotted path, and
    run the pre-launch checks (:mod:`runner.preflight`); raises ConfigError listing every problem."""
    from runner.preflight import check_scenario

    sets = [f"{k}={json.dumps(v, default=str)}" for k, v in (overrides or {}).items()]
    sets += [f"{k}={json.dumps(v)}" for k, v in (("hours", hours), ("seed", seed), ("mode", mode))
             if v is not None]
    source = Path(path) if path is not None else DEFAULT_SCENARIO
    sc = load_scenario(source, sets)
    check_scenario(sc, str(source))
    return sc


@dataclass
class Run:
    """A finished run folder: its KPIs and its result tables."""

    run_dir: Path
    kpis: dict = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        """``results/<name>`` as a DataFrame with typed columns (booleans, integers, text, floats) and, from the
        Parquet file, ``time_s`` and a timezone-aware ``timestamp`` in the scenario's local zone."""
        if name not in TABLES:
            raise ConfigError(f"table {name!r}: unknown; choose one of {', '.join(sorted(TABLES))}")
        path = self.run_dir / "results" / f"{name}.parquet"
        if path.is_file():
            return pd.read_parquet(path)
        csv = path.with_suffix(".csv")
        if not csv.is_file():
            raise ConfigError(f"{csv}: not found; is {self.run_dir} a finished run folder?")
        return typed_table(pd.read_csv(csv, keep_default_na=False, na_values=[""]), name)

    @property
    def tables(self) -> list[str]:
        return sorted({p.stem for p in (self.run_dir / "results").glob("*.csv")})


def load(run_dir: str | Path) -> Run:
    """Open a finished run folder (one written by :func:`run`, ``harmony run`` or ``harmony collect``)."""
    run_dir = Path(run_dir).resolve()
    kpis_path = run_dir / "kpis.json"
    if not kpis_path.is_file():
        raise ConfigError(f"{run_dir}: no kpis.json; give a finished run folder (or run `harmony collect` on it)")
    return Run(run_dir, json.loads(kpis_path.read_text()))


def run(path: str | Path | Scenario | None = None, *, out: str | Path | None = None, hours: float | None = None,
        seed: int | None = None, mode: str | None = None, overrides: Mapping[str, Any] | None = None,
        force: bool = False, progress: bool = False) -> Run:
    """Run one scenario (a file, a :class:`Scenario`, or the default) and return the finished run."""
    from runner.cli import execute

    sc = path if isinstance(path, Scenario) else scenario(path, hours=hours, seed=seed, mode=mode,
                                                           overrides=overrides)
    run_dir = Path(out or Path("runs") / sc.name).resolve()
    kpis = execute(sc, run_dir, show_progress=progress, force=force)
    return Run(run_dir, kpis)


def compare(path: str | Path | Scenario | None = None, *, out: str | Path | None = None,
            hours: float | None = None, seed: int | None = None, overrides: Mapping[str, Any] | None = None,
            force: bool = False) -> pd.DataFrame:
    """Run every mode on the same seed; return the comparison table (one row per mode)."""
    from runner.cli import execute
    from runner.compare import run_all
    from runner.launch import claim_out_dir

    sc = path if isinstance(path, Scenario) else scenario(path, hours=hours, seed=seed, overrides=overrides)
    out_dir = Path(out or Path("runs") / f"{sc.name}-compare").resolve()
    claim_out_dir(out_dir, "compare", force=force)
    return run_all(sc, out_dir, functools.partial(execute, force=force))
