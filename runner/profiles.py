"""Checks of the prosumers' own time series (``feeders[i].prosumers.profiles``, issue #17) before a run.

Each file is read and resampled to the run's 5-minute ticks exactly as the prosumer federate will
(:func:`federates.prosumer.devices.read_profile_csv`: CSV or Parquet, columns ``time`` and ``p_kw``, covering the
run, finite, >= 0), and each entry's pattern must match at least one of the feeder's prosumers, so a typo in a name
does not leave the generated profiles in place unnoticed.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from federates.common.config import FeederConfig, Scenario
from federates.common.errors import ConfigError
from federates.common.timebase import TICK_S
from federates.prosumer.devices import read_profile_csv

FILES = ("load", "pv", "ev")


def prosumer_names(feeder: FeederConfig, count: int) -> list[str]:
    """The names :func:`runner.population.make_prosumers` gives a feeder's ``count`` prosumers."""
    return [f"{feeder.name}_p{i:03d}" for i in range(count)]


def profile_problems(scenario: Scenario, counts: list[int]) -> list[str]:
    """Every problem of the profile files and patterns; ``counts[i]`` is how many prosumers feeder ``i`` gets."""
    n_steps = scenario.duration_s // TICK_S
    problems = []
    for i, (feeder, count) in enumerate(zip(scenario.feeders, counts, strict=True)):
        names = prosumer_names(feeder, count)
        for j, entry in enumerate(feeder.prosumers.profiles):
            where = f"feeders.{i}.prosumers.profiles.{j}"
            if not any(fnmatchcase(name, entry.match) for name in names):
                problems.append(f"{where}.match: {entry.match!r} matches none of the feeder's prosumers "
                                f"({names[0] if names else 'none'} ... {names[-1] if names else ''}); write a "
                                f"pattern such as {feeder.name}_p00* (names as in results/placement.csv)")
            for key in FILES:
                path = getattr(entry, key)
                if path is None:
                    continue
                try:
                    read_profile_csv(path, scenario.start, n_steps, TICK_S)
                except ConfigError as exc:
                    problems += [f"{where}.{key}: {p}" for p in exc.problems]
    return problems
