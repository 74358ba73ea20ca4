"""Prosumer devices, tariff and the seeded PV / load / forecast-error profiles.

SIGN CONVENTION (project-wide): a net power is positive when it is INJECTED INTO THE DISTRIBUTION
NETWORK by the named element. The profiles here are non-negative magnitudes: ``pv_profile`` is the PV
power available (kW), ``load_profile`` the inflexible consumption (kW).

Time: every hour field (``earliest_h``, ``TouPeriod.start_h``) is counted from midnight of the local
day of the simulation ``start``; a run that spans several days repeats them every 24 h.
"""

from __future__ import annotations

import functools
import math
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from federates.common.errors import ConfigError
from federates.common.imports import import_scipy, skip_pyomo_scipy_finalize

if TYPE_CHECKING:
    import pandas as pd
# pandas, pvlib and scipy are imported where the profiles are made: the configuration models below are imported by
# every federate (through federates.common.config), most of which never make a profile.

MAX_WINDOW_H = 23.0
"""Longest flexible-load window: shorter than a day so one day's window closes before the next opens."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_csv(path: Path | None) -> Path | None:
    if path is not None and not Path(path).is_file():
        raise ValueError(
            f"csv file {str(path)!r} does not exist: give the path of a file with columns "
            "time,p_kw (or drop `csv` to use the built-in model)"
        )
    return path


class Location(_Strict):
    """Where the prosumers are (for the sun's position)."""

    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180)
    altitude_m: float = 0.0
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, tz: str) -> str:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {tz!r}: use an IANA name such as 'Europe/Berlin'") from exc
        return tz


class PvConfig(_Strict):
    """Rooftop PV: clear-sky pvlib model x a seeded cloud process, or a user CSV (time, p_kw)."""

    kwp: float = Field(gt=0, description="DC nameplate kWp (also the AC cap)")
    tilt_deg: float = Field(default=30.0, ge=0, le=90)
    azimuth_deg: float = Field(default=180.0, ge=0, lt=360, description="180 = facing south")
    csv: Path | None = None
    cloudiness: float = Field(default=0.3, ge=0, le=1, description="median cloud cover fraction")
    forecast_error_std: float = Field(default=0.1, ge=0, description="relative std of the forecast")

    @field_validator("csv")
    @classmethod
    def _csv_exists(cls, v: Path | None) -> Path | None:
        return _check_csv(v)


class LoadConfig(_Strict):
    """Inflexible household load: the seeded stochastic model below, or a user CSV (time, p_kw)."""

    daily_kwh: float = Field(default=10.0, ge=0)
    csv: Path | None = None
    ev_csv: Path | None = Field(None, description="an EV's charging power (time, p_kw), added to this load as it "
                                "is: charging that the HEMS cannot shift")
    forecast_error_std: float = Field(default=0.15, ge=0, description="relative std of the forecast")

    @field_validator("csv", "ev_csv")
    @classmethod
    def _csv_exists(cls, v: Path | None) -> Path | None:
        return _check_csv(v)


class BatteryConfig(_Strict):
    """Home battery. SOC limits are fractions of ``capacity_kwh``.

    ``reserve_frac`` is SOC kept for resilience: the planner and normal dispatch never go below
    ``max(soc_min_frac, reserve_frac)``; only a corrective import cap (under-voltage/overload) may use it.
    """

    capacity_kwh: float = Field(gt=0)
    p_max_kw: float = Field(gt=0)
    eta_charge: float = Field(default=0.95, gt=0, le=1)
    eta_discharge: float = Field(default=0.95, gt=0, le=1)
    soc_min_frac: float = Field(default=0.1, ge=0, le=1)
    soc_max_frac: float = Field(default=0.95, ge=0, le=1)
    soc_init_frac: float = Field(default=0.5, ge=0, le=1)
    reserve_frac: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _consistent_soc(self) -> BatteryConfig:
        problems = []
        if self.soc_min_frac >= self.soc_max_frac:
            problems.append(
                f"soc_min_frac={self.soc_min_frac} must be below soc_max_frac={self.soc_max_frac}"
            )
        elif not self.soc_min_frac <= self.soc_init_frac <= self.soc_max_frac:
            problems.append(
                f"soc_init_frac={self.soc_init_frac} must lie in [soc_min_frac, soc_max_frac] = "
                f"[{self.soc_min_frac}, {self.soc_max_frac}]"
            )
        if self.reserve_frac > self.soc_max_frac:
            problems.append(
                f"reserve_frac={self.reserve_frac} exceeds soc_max_frac={self.soc_max_frac}: "
                "lower the reserve or raise the maximum SOC"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def floor_frac(self) -> float:
        """Lowest SOC fraction in normal operation (resilience reserve included)."""
        return max(self.soc_min_frac, self.reserve_frac)


class FlexLoadConfig(_Strict):
    """A shiftable daily energy need (EV, dishwasher): ``energy_kwh`` inside [earliest_h, deadline_h).

    Hours are counted from midnight of each day; ``deadline_h`` may exceed 24 for an overnight window
    (EV plugged in at 18 h, needed by 7 h next day: earliest_h=18, deadline_h=31).
    """

    name: str = Field(min_length=1)
    energy_kwh: float = Field(gt=0)
    earliest_h: float = Field(ge=0, lt=24)
    deadline_h: float
    p_max_kw: float = Field(gt=0)

    @model_validator(mode="after")
    def _fits_window(self) -> FlexLoadConfig:
        width_h = self.deadline_h - self.earliest_h
        if width_h <= 0 or width_h > MAX_WINDOW_H:
            raise ValueError(
                f"flexible load {self.name!r}: window [{self.earliest_h}, {self.deadline_h}) h must "
                f"be longer than 0 h and at most {MAX_WINDOW_H} h; for an overnight window write "
                "deadline_h past 24 (e.g. 18 -> 31)"
            )
        if self.energy_kwh > self.p_max_kw * width_h + 1e-9:
            raise ValueError(
                f"flexible load {self.name!r}: energy_kwh={self.energy_kwh} cannot fit its window "
                f"of {width_h:g} h at p_max_kw={self.p_max_kw} (at most "
                f"{self.p_max_kw * width_h:g} kWh): widen the window, raise p_max_kw or lower "
                "the energy"
            )
        return self


class TouPeriod(_Strict):
    """Retail price from ``start_h`` until the next period's start (wrapping past midnight)."""

    start_h: float = Field(ge=0, lt=24)
    price_per_kwh: float


class TariffConfig(_Strict):
    """Utility tariff: time-of-use retail price, flat buy-back price (net billing) or net metering,
    optional demand charge."""

    retail_tou: list[TouPeriod] = Field(min_length=1)
    buyback_price_per_kwh: float = Field(description="export credit per kWh under net billing")
    net_metering: bool = Field(False, description="credit exports at the retail price of the same time instead")
    demand_charge_per_kw: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _sane(self) -> TariffConfig:
        starts = [p.start_h for p in self.retail_tou]
        if starts != sorted(set(starts)):
            raise ValueError(f"retail_tou start_h values {starts} must be strictly increasing")
        low = min(p.price_per_kwh for p in self.retail_tou)
        if self.buyback_price_per_kwh > low:
            raise ValueError(
                f"buyback_price_per_kwh={self.buyback_price_per_kwh} exceeds the lowest retail price "
                f"{low}: buying to sell back would be unbounded profit; lower the buy-back price"
            )
        return self

    def retail_at(self, hour: float) -> float:
        """Retail price at ``hour`` (hours from midnight, any day: taken modulo 24)."""
        h = hour % 24.0
        price = self.retail_tou[-1].price_per_kwh  # before the first start: last period wraps round
        for period in self.retail_tou:
            if period.start_h <= h:
                price = period.price_per_kwh
        return price

    def export_price_at(self, hour: float) -> float:
        """Credit per kWh exported at ``hour``: the buy-back rate, or the retail rate under net metering."""
        return self.retail_at(hour) if self.net_metering else self.buyback_price_per_kwh

    def export_price_array(self, hours: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`export_price_at`."""
        if self.net_metering:
            return self.retail_array(hours)
        return np.full(np.shape(hours), self.buyback_price_per_kwh, dtype=float)

    def retail_array(self, hours: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`retail_at`."""
        starts = np.array([p.start_h for p in self.retail_tou])
        prices = np.array([p.price_per_kwh for p in self.retail_tou])
        idx = np.searchsorted(starts, np.mod(hours, 24.0), side="right") - 1
        return prices[idx]  # idx == -1 picks the last period: the wrap-round


class ProsumerConfig(_Strict):
    """One prosumer: inflexible load, optional PV, battery and flexible loads."""

    name: str = Field(min_length=1)
    load_name: str | None = None
    load: LoadConfig = LoadConfig()
    pv: PvConfig | None = None
    battery: BatteryConfig | None = None
    flex_loads: list[FlexLoadConfig] = []

    @model_validator(mode="after")
    def _unique_flex_names(self) -> ProsumerConfig:
        names = [f.name for f in self.flex_loads]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(
                f"prosumer {self.name!r}: flexible load names {dup} are repeated; make them unique"
            )
        return self


# ----------------------------------------------------------------------------------------- profiles
def _timeline(start: datetime, n_steps: int, step_s: int, tz: str) -> pd.DatetimeIndex:
    import pandas as pd

    idx = pd.date_range(pd.Timestamp(start), periods=n_steps, freq=pd.Timedelta(seconds=step_s))
    return idx.tz_localize(tz) if idx.tz is None else idx.tz_convert(tz)


def ar1(n: int, step_s: float, corr_time_s: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) series with unit variance and correlation exp(-step/corr_time) between steps."""
    phi = math.exp(-step_s / corr_time_s)
    innov = rng.standard_normal(n) * math.sqrt(1.0 - phi * phi)
    z0 = rng.standard_normal()
    return ar1_filter(innov, phi, z0)


def ar1_filter(x: np.ndarray, phi: float, y: float) -> np.ndarray:
    """``y[k] = x[k] + phi * y[k-1]`` from ``y[-1] = y``, rounded exactly as
    ``scipy.signal.lfilter([1], [1, -phi], x, zi=[phi * y])[0]`` rounds it (each step one product, one sum), so
    every profile keeps its last digit, without importing scipy.signal (which imports scipy.stats: ~0.5 CPU-s at
    every prosumer federate's start, more than this loop costs a fleet of 1,000 prosumers)."""
    return np.fromiter([(y := xk + phi * y) for xk in x.tolist()], float, len(x))


def forecast_error(
    n_steps: int, step_s: int, std: float, seed: int, corr_time_s: float = 3 * 3600.0
) -> np.ndarray:
    """Seeded multiplicative forecast error: forecast = realised x (1 + e), e ~ AR(1) with this std.

    Slowly varying (3 h correlation), like day-ahead weather/behaviour forecast errors; clipped so the
    factor stays in [0, 2].
    """
    rng = np.random.default_rng(seed)
    return np.clip(1.0 + std * ar1(n_steps, step_s, corr_time_s, rng), 0.0, 2.0)


def read_profile_table(path: Path) -> pd.DataFrame:
    """A user profile file as a table with columns ``time`` and ``p_kw`` (CSV, or Parquet by its suffix)."""
    import pandas as pd

    path = Path(path)
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        df = pd.read_parquet(path) if parquet else pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        kind = "Parquet" if parquet else "CSV"
        raise ConfigError(f"{path}: cannot read it as {kind} ({' '.join(str(exc).split())[:120]}); give a "
                          f"{kind} file with columns time,p_kw") from None
    missing = {"time", "p_kw"} - set(df.columns)
    if missing:
        raise ConfigError(f"{path}: missing column(s) {sorted(missing)}; the file needs columns time,p_kw")
    if df.empty:
        raise ConfigError(f"{path}: has no rows; give at least one time,p_kw row covering the run")
    return df


def _seconds_since(path: Path, time: pd.Series, start: datetime) -> np.ndarray:
    """Times as seconds since ``start``: numbers are taken as seconds already, text as datetimes."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(time):
        return time.to_numpy(float)
    t0 = pd.Timestamp(start)
    try:
        t = pd.to_datetime(time, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: column time: {' '.join(str(exc).split())[:100]}; give ISO datetimes in the "
                          "scenario's local time (e.g. 2024-06-21 10:05) or seconds since the start") from None
    if (t.dt.tz is None) != (t0.tz is None):
        raise ConfigError(
            f"{path}: give times with a UTC offset if and only if the run start {start} has one "
            "(a scenario's start is local time: drop the offsets)"
        )
    return (t - t0).dt.total_seconds().to_numpy(float)


def _step_means(rel_s: np.ndarray, p: np.ndarray, hold_s: float, ticks_s: np.ndarray, step_s: int) -> np.ndarray:
    """Time-weighted mean over each tick of the step function that holds each value until the next time."""
    edges = np.append(rel_s, rel_s[-1] + hold_s)
    area = np.concatenate(([0.0], np.cumsum(p * np.diff(edges))))

    def integral(x: np.ndarray) -> np.ndarray:
        j = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(p) - 1)
        return area[j] + p[j] * (np.minimum(x, edges[-1]) - edges[j])

    return (integral(ticks_s + step_s) - integral(ticks_s)) / step_s


def _persist(values: np.ndarray, covered: int, step_s: int) -> np.ndarray:
    """Ticks from ``covered`` on repeat the value a day earlier (the last covered one within the first day)."""
    day = round(86400 / step_s)
    out = values.copy()
    for k in range(covered, len(out)):
        out[k] = out[k - day] if k >= day else out[covered - 1]
    return out


def read_profile_csv(path: Path, start: datetime, n_steps: int, step_s: int, run_steps: int | None = None
                     ) -> np.ndarray:
    """A user profile file (CSV or Parquet, columns ``time``, ``p_kw``) on the run's ticks (kW, >= 0).

    ``time`` is an ISO datetime in the run's local time or a number of seconds since ``start``. Rows finer than
    ``step_s`` (median spacing) are time-weighted means: each value holds until the next row's time (the last
    one for one median spacing), so 1-minute data is averaged over each 5-minute tick. Rows as coarse as a tick
    or coarser are interpolated linearly between rows at each tick's start. The file must cover the first
    ``run_steps`` ticks (default: all ``n_steps``); later ticks it does not cover (the HEMS look-ahead past the
    run's end) repeat the value a day earlier, or within the first day the last covered tick's.
    """
    import pandas as pd

    df = read_profile_table(path)
    rel_s = _seconds_since(path, df["time"], start)
    p = pd.to_numeric(df["p_kw"], errors="coerce").to_numpy(float)   # text becomes NaN, reported below
    if not np.all(np.isfinite(rel_s)):
        raise ConfigError(f"{path}: column time has empty or unreadable values; fill every row")
    bad = np.flatnonzero(~(np.isfinite(p) & (p >= 0)))
    if len(bad):
        raise ConfigError(f"{path}: p_kw must be finite and non-negative (magnitude in kW), got {p[bad[0]]:g} at time "
                          f"{df['time'].iloc[bad[0]]} ({len(bad)} such rows); fix the file")
    order = np.argsort(rel_s, kind="stable")
    rel_s, p = rel_s[order], p[order]
    if np.any(np.diff(rel_s) == 0):
        raise ConfigError(f"{path}: time {rel_s[np.flatnonzero(np.diff(rel_s) == 0)[0]]:g} s after the start "
                          "repeats; give each time once")
    ticks_s = np.arange(n_steps) * float(step_s)
    spacing = float(np.median(np.diff(rel_s))) if len(rel_s) > 1 else float(step_s)
    if spacing < step_s:
        values, last_s = _step_means(rel_s, p, spacing, ticks_s, step_s), rel_s[-1] + spacing - step_s
    else:
        values, last_s = np.interp(ticks_s, rel_s, p), rel_s[-1]
    need = n_steps if run_steps is None else min(run_steps, n_steps)
    t0 = pd.Timestamp(start)
    if rel_s[0] > 0 or last_s < (need - 1) * step_s - 1e-6:
        end = t0 + pd.Timedelta(seconds=need * step_s)
        raise ConfigError(
            f"{path}: times must cover the run [{t0}, {end}), the file covers "
            f"[{t0 + pd.Timedelta(seconds=rel_s[0])}, {t0 + pd.Timedelta(seconds=last_s + step_s)}); "
            "give a file that covers the whole run, or move start / shorten hours"
        )
    covered = int(np.searchsorted(ticks_s, last_s + 1e-6, side="right"))
    return _persist(values, max(covered, need), step_s)


@functools.lru_cache(maxsize=64)
def _clear_sky_pv_per_kwp(
    lat: float,
    lon: float,
    alt: float,
    tz: str,
    start: datetime,
    n_steps: int,
    step_s: int,
    tilt: float,
    azimuth: float,
) -> np.ndarray:
    """Clear-sky AC power per kWp at mid-interval (pvlib Ineichen clear sky, isotropic POA, PVWatts)."""
    import pandas as pd

    skip_pyomo_scipy_finalize()  # pvlib imports scipy: not scipy.stats as well (federates.common.imports)
    import pvlib  # heavy import, only needed for modelled PV

    times = _timeline(start, n_steps, step_s, tz) + pd.Timedelta(seconds=step_s / 2)
    site = pvlib.location.Location(lat, lon, tz=tz, altitude=alt)
    with warnings.catch_warnings():
        # pvlib 0.16 still calls pandas APIs that pandas 3 deprecates; not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        sun = site.get_solarposition(times)
        cs = site.get_clearsky(times, model="ineichen", solar_position=sun)
        poa = pvlib.irradiance.get_total_irradiance(
            tilt, azimuth, sun["apparent_zenith"], sun["azimuth"], cs["dni"], cs["ghi"], cs["dhi"]
        )["poa_global"].fillna(0.0)
        temp_cell = pvlib.temperature.faiman(poa, temp_air=20.0, wind_speed=1.0)
        dc_kw = pvlib.pvsystem.pvwatts_dc(poa, temp_cell, pdc0=1.0, gamma_pdc=-0.004)
    return np.clip(np.asarray(dc_kw, float) * (1.0 - 0.14), 0.0, 1.0)  # PVWatts default 14 % losses


def cloud_factor(n_steps: int, step_s: int, cloudiness: float, seed: int) -> np.ndarray:
    """Seeded clear-sky index k in [0.25, 1] from a cloud-cover process.

    Cloud cover c(t) = Phi(z(t) + Phi^-1(cloudiness)) with z an AR(1) of 1 h correlation time (so the
    median cover is ``cloudiness``), mapped to irradiance with Kasten & Czeplak (1980),
    k = 1 - 0.75 c^3.4 (Solar Energy 24:177-189).
    """
    if cloudiness <= 0.0:
        return np.ones(n_steps)
    z = ar1(n_steps, step_s, 3600.0, np.random.default_rng(seed))
    special = import_scipy("scipy.special")  # ndtr, ndtri: the normal cdf and its inverse (scipy.stats.norm's)
    cover = np.ones(n_steps) if cloudiness >= 1.0 else special.ndtr(z + special.ndtri(cloudiness))
    return 1.0 - 0.75 * cover**3.4


def pv_profile(
    cfg: PvConfig, location: Location, start: datetime, n_steps: int, step_s: int, seed: int,
    run_steps: int | None = None,
) -> np.ndarray:
    """Available PV power (kW, >= 0) per interval: the file if given (:func:`read_profile_csv`, which must
    cover the first ``run_steps``), else pvlib clear sky x cloud factor.

    A naive ``start`` is read in ``location.timezone``.
    """
    if cfg.csv is not None:
        return read_profile_csv(cfg.csv, start, n_steps, step_s, run_steps)
    clear = _clear_sky_pv_per_kwp(
        location.latitude_deg,
        location.longitude_deg,
        location.altitude_m,
        location.timezone,
        start,
        n_steps,
        step_s,
        cfg.tilt_deg,
        cfg.azimuth_deg,
    )
    return cfg.kwp * clear * cloud_factor(n_steps, step_s, cfg.cloudiness, seed)


# --------------------------------------------------------------------------------- residential load
# A bottom-up, occupancy-driven model in the spirit of Richardson, Thomson, Infield & Clifford (2010),
# "Domestic electricity use: a high-resolution energy demand model", Energy and Buildings 42:1878-1887:
# appliances switch on only while someone is at home and awake, at time-of-day dependent rates. The
# numbers below are our own round figures (no code or data of the GPL CREST tool is used).
_ACTIVE_PROB = np.array(
    [  # probability that the home is actively occupied, by hour of day
        0.05,
        0.03,
        0.03,
        0.03,
        0.04,
        0.10,
        0.45,
        0.75,
        0.60,
        0.40,
        0.35,
        0.35,
        0.40,
        0.35,
        0.35,
        0.40,
        0.50,
        0.70,
        0.85,
        0.85,
        0.80,
        0.65,
        0.40,
        0.15,
    ]
)
_MEAL = np.array([0, 0, 0, 0, 0, 0, 1, 2, 1, 0, 0, 1, 2, 1, 0, 0, 0, 1, 3, 2, 1, 0, 0, 0], float)
#               (name, kW, minutes, starts per active hour, weight by hour of day)
_APPLIANCES = (
    ("kettle", 2.0, 3, 0.30, None),
    ("microwave", 1.0, 5, 0.10, _MEAL),
    ("cooking", 2.0, 30, 0.12, _MEAL),
    ("tv", 0.12, 120, 0.10, None),
    ("washing", 0.6, 90, 0.03, None),
    ("vacuum", 1.2, 20, 0.02, None),
)
_STANDBY_KW = 0.05
_FRIDGE_KW, _FRIDGE_PERIOD_MIN = 0.10, 40
_LIGHT_KW = 0.20


def _dark(hour: np.ndarray) -> np.ndarray:
    return ((hour < 7.0) | (hour >= 18.0)).astype(float)


@functools.lru_cache(maxsize=8)
def _minute_calendar(h0: float, n: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """What the load model's minutes ``h0 + k / 60`` h (``k < n``) are alike in every home (so computed once a
    fleet): the probability that the home is actively occupied, the lighting (kW) it has on while active, and each
    appliance's chance to start in an active minute (read-only arrays)."""
    hours = h0 + np.arange(n) / 60.0
    hod = np.floor(hours).astype(int) % 24
    arrays = (_ACTIVE_PROB[hod], _LIGHT_KW * _dark(hours % 24.0),
              *((np.ones(n) if weight is None else weight[hod] / weight.mean()) * rate_per_h / 60.0
                for _name, _kw, _minutes, rate_per_h, weight in _APPLIANCES))
    for a in arrays:
        a.flags.writeable = False
    return arrays[0], arrays[1], arrays[2:]


def _raw_load_minutes(h0: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unscaled 1-minute household load (kW) at the ``n`` minutes from ``h0`` hours after midnight.

    ``active`` is 0 or 1 each minute, so ``active * light_kw`` is ``_LIGHT_KW * active * dark`` and
    ``active * start`` is ``active * weight * rate / 60`` to the last bit (the calendar holds the rest of each
    product: :func:`_minute_calendar`)."""
    active_prob, light_kw, start_prob = _minute_calendar(h0, n)
    z = ar1(n, 60.0, 1800.0, rng)
    active = (import_scipy("scipy.special").ndtr(z) < active_prob).astype(float)  # ndtr: scipy.stats.norm.cdf
    p = np.full(n, _STANDBY_KW)
    p += _FRIDGE_KW * (((np.arange(n) + rng.integers(_FRIDGE_PERIOD_MIN)) % _FRIDGE_PERIOD_MIN) < 15)
    p += active * light_kw
    for (_name, kw, minutes, _rate, _weight), start in zip(_APPLIANCES, start_prob, strict=True):
        starts = np.flatnonzero(rng.random(n) < active * start)
        # one draw per start, in order: the same numbers as a scalar draw per start
        durations = np.maximum(1, np.rint(minutes * rng.uniform(0.7, 1.3, len(starts))).astype(int))
        for s, dur in zip(starts.tolist(), durations.tolist(), strict=True):
            p[s : s + dur] += kw
    return p * np.clip(1.0 + 0.05 * rng.standard_normal(n), 0.5, 1.5)


def load_profile(cfg: LoadConfig, start: datetime, n_steps: int, step_s: int, seed: int,
                 run_steps: int | None = None) -> np.ndarray:
    """Inflexible load (kW, >= 0) per interval: the file if given (:func:`read_profile_csv`, which must cover the
    first ``run_steps``), else the seeded occupancy model; plus the EV's charging file ``ev_csv`` if given.

    The model is simulated at 1-minute resolution, averaged to ``step_s`` and scaled so that the
    mean daily energy over the run equals ``daily_kwh``.
    """
    base = _house_load(cfg, start, n_steps, step_s, seed, run_steps)
    if cfg.ev_csv is None:
        return base
    return base + read_profile_csv(cfg.ev_csv, start, n_steps, step_s, run_steps)


def _house_load(cfg: LoadConfig, start: datetime, n_steps: int, step_s: int, seed: int,
                run_steps: int | None) -> np.ndarray:
    if cfg.csv is not None:
        return read_profile_csv(cfg.csv, start, n_steps, step_s, run_steps)
    if step_s % 60:
        raise ConfigError(f"step_s={step_s} must be a whole number of minutes for the load model")
    import pandas as pd

    per = step_s // 60
    ts = pd.Timestamp(start)
    h0 = ts.hour + ts.minute / 60.0 + ts.second / 3600.0
    raw = _raw_load_minutes(h0, n_steps * per, np.random.default_rng(seed)).reshape(n_steps, per).mean(axis=1)
    days = n_steps * step_s / 86400.0
    energy = raw.sum() * step_s / 3600.0
    return raw * (cfg.daily_kwh * days / energy) if energy > 0 else raw
