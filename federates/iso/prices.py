"""Ancillary-service price and requirement time series read from user CSV files.

Price file format (the layout of ``shared/data/spp_ancillary_prices_2022-02-02_03.csv``)::

    # comment lines start with '#', blank lines are ignored
    interval_ending,reg_up,reg_down,spin,supp
    2022-02-02 01:00,8.0159,10.2687,0.0002,0.0001
    ...

* The first column ``interval_ending`` is the END of each interval, as ISOs publish it ("hour ending"). A
  row ending at ``E`` applies to ``[E - interval, E)``; the interval length is the (constant) spacing of the
  rows, so the file needs at least two rows.
* Prices are in $/MW-h, the unit ISOs publish. Columns ``reg_up``, ``reg_down`` and ``spin`` are required,
  ``supp`` is kept if present, any other column is an error (it is most likely a typo).
* Files stitched together from several downloads repeat their header block; a later line identical to the
  header is skipped, as are the comment lines around it.

Requirement files have the same layout with columns ``reg_up_kw``, ``reg_down_kw``, ``spin_kw`` (kW).
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pandas as pd

from federates.common.errors import ConfigError

PRODUCTS = ("reg_up", "reg_down", "spin")
TIME_COLUMN = "interval_ending"
_PRICE_OPTIONAL = ("supp",)


def load_price_csv(path: str | Path) -> pd.DataFrame:
    """Read an ancillary price file; return $/MW-h per product indexed by ``interval_ending``.

    Columns: ``reg_up``, ``reg_down``, ``spin`` (and ``supp`` if the file has it). ``df.attrs["interval_s"]``
    holds the interval length in seconds. Raises :class:`ConfigError` naming the file, line and fix.
    """
    return _load_series_csv(Path(path), required=PRODUCTS, optional=_PRICE_OPTIONAL, suffix="")


def load_requirement_csv(path: str | Path) -> pd.DataFrame:
    """Read an ancillary requirement file (``reg_up_kw``, ``reg_down_kw``, ``spin_kw``, kW).

    Returns a frame indexed by ``interval_ending`` with the columns renamed to the product names (values
    stay in kW). Same layout rules and errors as :func:`load_price_csv`.
    """
    required = tuple(f"{p}_kw" for p in PRODUCTS)
    df = _load_series_csv(Path(path), required=required, optional=(), suffix="_kw")
    return df.rename(columns={f"{p}_kw": p for p in PRODUCTS})


def load_regulation_csv(path: str | Path) -> pd.DataFrame:
    """Read a regulation signal (column ``regulation``, in [-1, 1], + = up) indexed by ``interval_ending``.

    Same layout rules and errors as :func:`load_price_csv`; a value outside [-1, 1] is refused.
    """
    df = _load_series_csv(Path(path), required=("regulation",), optional=(), suffix="")
    bad = df[(df["regulation"] < -1.0) | (df["regulation"] > 1.0)]
    if len(bad):
        raise ConfigError(f"{path}: regulation at {bad.index[0]} is {bad['regulation'].iloc[0]}; the signal is a "
                          "fraction of the award and must lie in [-1, 1]")
    return df


def price_at(df: pd.DataFrame, t: datetime) -> dict[str, float]:
    """Values of the interval that contains ``t`` (``[E - interval, E)`` for the row ending at ``E``).

    Works for frames from :func:`load_price_csv` and :func:`load_requirement_csv`. Raises
    :class:`ConfigError` if ``t`` is outside the file's span.
    """
    interval = pd.Timedelta(seconds=df.attrs["interval_s"])
    ts = pd.Timestamp(t)
    start, end = df.index[0] - interval, df.index[-1]
    if ts < start or ts >= end:
        raise ConfigError(
            f"time {ts} is outside the series, which covers [{start}, {end}); "
            "use a file that covers the whole scenario or move the scenario start"
        )
    row = df.iloc[int(df.index.searchsorted(ts, side="right"))]
    return {str(k): float(v) for k, v in row.items()}


def _load_series_csv(path: Path, *, required: tuple[str, ...], optional: tuple[str, ...],
                     suffix: str) -> pd.DataFrame:
    """Parse the CSV line by line so every error can name its line."""
    if not path.is_file():
        raise ConfigError(f"file {path} does not exist; give the path of an existing CSV file")
    header: list[str] | None = None
    stamps: list[pd.Timestamp] = []
    rows: list[list[float]] = []
    for lineno, raw in enumerate(_read_text(path).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or [c.strip() for c in line.split(",")] == header:
            continue
        if header is None:
            header = _check_header(path, lineno, line, required, optional, suffix)
            continue
        stamp, values = _parse_row(path, lineno, line, header)
        if stamps and stamp <= stamps[-1]:
            raise ConfigError(f"{path}, line {lineno}: time {stamp} is not after the previous row "
                              f"({stamps[-1]}); sort the rows by time and remove duplicates")
        stamps.append(stamp)
        rows.append(values)
    if header is None or len(rows) < 2:
        raise ConfigError(f"{path}: found {len(rows)} data rows; the file needs a header line and at "
                          "least two rows (the interval length is the spacing of the rows)")
    df = pd.DataFrame(rows, columns=header[1:], index=pd.DatetimeIndex(stamps, name=TIME_COLUMN))
    df.attrs["interval_s"] = _interval_s(path, df.index)
    return df


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror}); check the file and its permissions") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: byte {exc.object[exc.start]:#04x} is not UTF-8 text; the file is "
                          "not a CSV (or not saved as UTF-8): give a text CSV file") from None


def _check_header(path: Path, lineno: int, line: str, required: tuple[str, ...],
                  optional: tuple[str, ...], suffix: str) -> list[str]:
    names = [c.strip() for c in line.split(",")]
    problems = []
    if names[0] != TIME_COLUMN:
        problems.append(f"first column is {names[0]!r}; name it {TIME_COLUMN!r} (interval end times)")
    missing = [c for c in required if c not in names[1:]]
    if missing:
        problems.append(f"missing columns {missing}; the header must contain {list(required)}")
    unknown = [c for c in names[1:] if c not in required + optional]
    if unknown:
        problems.append(f"unknown columns {unknown}; allowed are {list(required + optional)}"
                        + (f" (values in kW, names ending in {suffix!r})" if suffix else " ($/MW-h)"))
    if len(set(names)) != len(names):
        problems.append(f"repeated column names in {names}; name every column once")
    if problems:
        raise ConfigError([f"line {lineno}: {p}" for p in problems], source=str(path))
    return names


def _parse_row(path: Path, lineno: int, line: str, header: list[str]) -> tuple[pd.Timestamp, list[float]]:
    cells = [c.strip() for c in line.split(",")]
    where = f"{path}, line {lineno}"
    if len(cells) != len(header):
        raise ConfigError(f"{where}: {len(cells)} fields but the header has {len(header)}; "
                          f"give one value per column {header}")
    try:
        stamp = pd.Timestamp(cells[0])
        if stamp is pd.NaT:
            raise ValueError("no time given")
    except ValueError as exc:
        raise ConfigError(f"{where}: {cells[0]!r} is not a time ({exc}); "
                          "write it as YYYY-MM-DD HH:MM") from exc
    if stamp.tzinfo is not None:
        raise ConfigError(f"{where}: time {cells[0]!r} must be a local time without a UTC offset, "
                          "written as YYYY-MM-DD HH:MM (the scenario's start is local time too)")
    values = []
    for name, cell in zip(header[1:], cells[1:], strict=True):
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"{where}: column {name!r} has {cell!r}, which is not a finite number; "
                              "fill in the value or drop the row")
        values.append(value)
    return stamp, values


def _interval_s(path: Path, index: pd.DatetimeIndex) -> float:
    steps = index.to_series().diff().dropna().dt.total_seconds()
    irregular = steps[steps != steps.iloc[0]]
    if not irregular.empty:
        t = irregular.index[0]
        raise ConfigError(f"{path}: the row ending {t} is {irregular.iloc[0]:.0f} s after the previous one, "
                          f"but the file starts with {steps.iloc[0]:.0f} s intervals; "
                          "give one row per interval, evenly spaced")
    return float(steps.iloc[0])
