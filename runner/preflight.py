"""Checks run before any process starts: what the schema cannot see on its own.

:func:`preflight` returns every problem found, one line each naming the field or file, the value and the fix:

* each feeder compiles, its base case (no prosumers) converges, and its prosumers can be placed
  (:func:`runner.build.place`, the builder's own placement);
* the transmission system (``transmission``): every bus of ``bus_of`` is a bus of the case, and the case's power
  flow converges as given and for the first interval with the feeders attached (:mod:`runner.transmission`);
* the prosumers' own load, PV and EV files load, resample and cover the run, and each pattern names a prosumer
  (:func:`runner.profiles.profile_problems`);
* the ISO price and regulation CSVs load with the loaders the ISO federate uses
  (:mod:`federates.iso.prices`), cover the whole run and hold no negative price in it;
* the run fits in this machine's memory (an estimate from the span, the prosumers and the processes, against
  ``MemAvailable`` in ``/proc/meminfo``).

:func:`check_scenario` raises one :class:`ConfigError` listing them all; ``harmony validate`` and ``harmony run``
call it before anything is launched. :func:`check_out_dir` checks that a run folder can be written.
"""

from __future__ import annotations

import contextlib
import math
import os
from datetime import datetime, timedelta
from pathlib import Path

from federates.common.config import PRODUCTS, FeederConfig, Scenario
from federates.common.errors import ConfigError
from federates.common.timebase import TICK_S
from runner.profiles import profile_problems

# Memory estimate (bytes). A federate process with Python, pandas, Pyomo, HELICS and OpenDSS loaded measures
# 110-125 MB resident before its first step (2026-11-30); HiGHS models and buffers come on top.
PROCESS_BYTES = 200 * 2**20
# Per prosumer and 5-minute tick: the fleet's profiles and forecasts and its top-down twin (about 70 B
# measured with tracemalloc over 32 days), plus its rows in the result tables that `collect` holds in pandas
# while merging (prosumer_steps, voltages, ledger, exchange: about 1 KB), with a margin.
PROSUMER_TICK_BYTES = 2048
FEDERATE_TICK_BYTES = 1024          # per federate and tick: per-tick arrays and its exchange-record rows
LONGEST_INSIDE = "/parts/prosumers_" + "x" * 40 + "_999/prosumer_steps.csv"    # deepest file a run writes


def preflight(scenario: Scenario) -> list[str]:
    """Every problem that would make the launched federation fail, found without launching it."""
    problems, counts, placed = [], [], []
    for i, feeder in enumerate(scenario.feeders):
        if scenario.transmission is None:
            found, count = _feeder_problems(scenario, i, feeder)
        else:  # the transmission check needs each feeder's base case
            found, count, done = _placed_feeder(scenario, i, feeder)
            placed += [done] if done is not None and done.base_converged else []
        problems += found
        counts.append(count)
    problems += _transmission_problems(scenario, placed)
    problems += _csv_problems(scenario)
    problems += profile_problems(scenario, counts)
    problems += memory_problems(scenario, sum(counts))
    return problems


def check_scenario(scenario: Scenario, source: str = "") -> None:
    """Raise :class:`ConfigError` listing every problem :func:`preflight` finds."""
    problems = preflight(scenario)
    if problems:
        raise ConfigError(problems, source)


# ---- feeders -------------------------------------------------------------------------------------------------
def _feeder_problems(scenario: Scenario, i: int, feeder: FeederConfig) -> tuple[list[str], int]:
    """Problems of feeder ``i`` and how many prosumers it gets (the count asked for when placement fails): the
    builder's own placement (:func:`runner.build.place`) compiles the feeder and solves its base case once."""
    return _placed_feeder(scenario, i, feeder)[:2]


def _placed_feeder(scenario: Scenario, i: int, feeder: FeederConfig) -> tuple[list[str], int, object]:
    """:func:`_feeder_problems` and the feeder's placement (None when it fails)."""
    from runner.build import place  # OpenDSS: imported only when a check needs it

    where = f"feeders.{i} ({feeder.name})"
    try:
        placed = place(scenario.model_copy(update={"feeders": [feeder]}), hand_over=True)[0]  # build takes it
    except ConfigError as exc:
        return [f"{where}: {p}" for p in exc.problems], _asked(feeder), None
    problems = []
    if not placed.base_converged:
        problems.append(f"{where}.master {feeder.master}: the base case (no prosumers) does not converge: "
                        f"{placed.base_message}; raise feeders.{i}.max_iterations or check the model in OpenDSS "
                        "(`harmony feeder info`)")
    return problems, len(placed.prosumers), placed


def _transmission_problems(scenario: Scenario, placed: list) -> list[str]:
    """The transmission case's buses and the convergence of its first interval (:mod:`runner.transmission`)."""
    if scenario.transmission is None:
        return []
    from runner.transmission import base_of, transmission_problems

    return transmission_problems(scenario, base_of(placed))


def _asked(feeder: FeederConfig) -> int:
    placement = feeder.prosumers.placement
    if isinstance(placement, list):
        return len(placement)
    return placement if isinstance(placement, int) else 0


# ---- ISO files -----------------------------------------------------------------------------------------------
def _csv_problems(scenario: Scenario) -> list[str]:
    """Load the ISO's CSVs as the ISO federate will and check they cover the run (and prices are >= 0)."""
    from federates.iso.prices import load_price_csv, load_regulation_csv
    iso, problems = scenario.iso, []
    start = scenario.start
    end = start + timedelta(seconds=scenario.duration_s)
    if iso.prices == "csv" and iso.price_csv is not None:
        try:
            table = load_price_csv(iso.price_csv)
        except ConfigError as exc:
            problems += _named("iso.price_csv", exc)
        else:
            problems += _coverage("iso.price_csv", iso.price_csv, table, start, end)
            problems += _negative_prices(iso.price_csv, table, start, end)
    if iso.regulation_csv is not None:
        try:
            table = load_regulation_csv(iso.regulation_csv)
        except ConfigError as exc:
            problems += _named("iso.regulation_csv", exc)
        else:
            problems += _coverage("iso.regulation_csv", iso.regulation_csv, table, start, end)
    return problems


def _named(field: str, exc: ConfigError) -> list[str]:
    head = f"{field} {exc.source}" if exc.source else field
    return [f"{head}: {p}" for p in exc.problems]


def _span(table) -> tuple[datetime, datetime]:
    """The times a series covers: ``[first end - interval, last end)`` (rows are interval-ending)."""
    interval = timedelta(seconds=table.attrs["interval_s"])
    return table.index[0].to_pydatetime() - interval, table.index[-1].to_pydatetime()


def _coverage(field: str, path: Path, table, start: datetime, end: datetime) -> list[str]:
    first, last = _span(table)
    if first <= start and end <= last:
        return []
    return [f"{field} {path}: covers [{first}, {last}) but the run needs [{start}, {end}); use a file that "
            "covers the whole run, or move start / shorten hours"]


def _negative_prices(path: Path, table, start: datetime, end: datetime) -> list[str]:
    interval = timedelta(seconds=table.attrs["interval_s"])
    used = table[(table.index > start) & (table.index - interval < end)]
    problems = []
    for product in PRODUCTS:
        negative = used[used[product] < 0]
        if len(negative):
            problems.append(f"iso.price_csv {path}: {product} is {negative[product].iloc[0]:g} $/MW-h in the "
                            f"interval ending {negative.index[0]} ({len(negative)} negative in the run); "
                            "ancillary prices must be >= 0: fix the file")
    return problems


# ---- memory --------------------------------------------------------------------------------------------------
def estimate_memory_bytes(scenario: Scenario, prosumers: int) -> int:
    """Rough peak memory of a run: every federate process plus per-tick data of prosumers and federates."""
    ticks = scenario.duration_s // TICK_S + 1
    per_feeder = 3  # feeder, VPP and at least one prosumer federate
    size = scenario.federation.prosumers_per_federate or max(1, prosumers // (os.cpu_count() or 1))
    federates = len(scenario.feeders) * per_feeder + 2 + math.ceil(prosumers / size)
    return federates * PROCESS_BYTES + ticks * (prosumers * PROSUMER_TICK_BYTES + federates * FEDERATE_TICK_BYTES)


def available_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` (else ``MemTotal``) from ``/proc/meminfo``; None where there is no such file."""
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
    except OSError:
        return None
    for key in ("MemAvailable", "MemTotal"):
        if key in fields:
            return int(fields[key].split()[0]) * 1024
    return None


def memory_problems(scenario: Scenario, prosumers: int, available: int | None = None) -> list[str]:
    need = estimate_memory_bytes(scenario, prosumers)
    have = available if available is not None else available_memory_bytes()
    if have is None or need <= have:
        return []
    fixed = estimate_memory_bytes(scenario.model_copy(update={"hours": 0.0}), prosumers)
    per_hour = (need - fixed) / scenario.hours
    most_h = max(0.0, (have - fixed) / per_hour) if per_hour > 0 else 0.0
    return [f"hours: a run of {scenario.hours:g} h with {prosumers} prosumers needs about {need / 2**30:.1f} GiB "
            f"of memory (estimate) but this machine has {have / 2**30:.1f} GiB available (/proc/meminfo); "
            f"shorten hours to at most {math.floor(most_h):g} or place fewer prosumers"]


# ---- run folder ----------------------------------------------------------------------------------------------
def check_out_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Check that a run folder can be made and written in; return it absolute. Raises :class:`ConfigError`
    naming the path and the fix. Creates nothing that it does not remove again. (Whether an existing folder
    may be replaced is ``runner.launch.claim_out_dir``'s decision.)"""
    given = str(path)
    full = Path(os.path.abspath(os.path.expanduser(given)))
    problem = _length_problem(full) or _existing_problem(full) or _writable_problem(full)
    if problem:
        shown = given if len(given) <= 120 else f"{given[:60]}...{given[-40:]}"
        raise ConfigError(f"{option} {shown!r}: {problem}")
    return full


def _length_problem(full: Path) -> str | None:
    name_max, path_max = _limits(full)
    longest = max(full.parts, key=len)
    if len(longest.encode()) > name_max:
        return (f"the name {longest[:40]!r}... is {len(longest.encode())} bytes long, above this file system's "
                f"limit of {name_max}; use a shorter folder name")
    if len(str(full).encode()) + len(LONGEST_INSIDE) > path_max:
        return (f"the path is {len(str(full).encode())} bytes long; with the files a run writes inside it would "
                f"pass this system's limit of {path_max}; use a shorter path")
    return None


def _limits(full: Path) -> tuple[int, int]:
    anchor = _existing_ancestor(full)
    try:
        return os.pathconf(anchor, "PC_NAME_MAX"), os.pathconf(anchor, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def _existing_ancestor(full: Path) -> Path:
    for candidate in (full, *full.parents):
        if _exists(candidate):
            return candidate
    return Path(full.anchor)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long to look up
        return False


def _existing_problem(full: Path) -> str | None:
    anchor = _existing_ancestor(full)
    if not anchor.is_dir():
        what = "is a file" if anchor == full else f"is under {anchor}, which is a file"
        return f"{what}, so no run folder can be made there; choose a folder path"
    return None


def _writable_problem(full: Path) -> str | None:
    """Make the folder (and its missing parents), write a probe file, and remove what was made."""
    missing = [p for p in (full, *full.parents) if not _exists(p)]  # deepest first
    try:
        full.mkdir(parents=True, exist_ok=True)
        probe = full / ".harmony-write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return f"cannot be written ({exc.strerror}); choose a folder you can write to"
    finally:
        for folder in missing:  # only the (empty) folders made here
            with contextlib.suppress(OSError):
                folder.rmdir()
    return None
