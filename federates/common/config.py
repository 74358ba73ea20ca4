"""The scenario schema: one validated description of a whole run.

Every model forbids unknown keys, so a typo fails loudly with its field path. ``load_scenario`` reads a YAML or
JSON file, applies ``--set PATH=VALUE`` overrides, validates everything and reports every problem at once as a
:class:`ConfigError` naming the file, the field, the value and the fix.

Relative paths in a scenario (feeder masters, CSVs) are relative to the scenario file.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from federates.common.errors import ConfigError
from federates.prosumer.devices import Location, TariffConfig, TouPeriod

MODES = ("topdown", "netmetering", "layer1", "layer12", "full")
Mode = Literal["topdown", "netmetering", "layer1", "layer12", "full"]
P2P_MODES = ("layer1", "layer12", "full")        # modes with the feeder P2P markets (and so the VPPs)
ANCILLARY_MODES = ("layer12", "full")            # modes in which the VPPs trade in the ISO market
PRODUCTS = ("reg_up", "reg_down", "spin")
Mechanism = Literal["auction", "pay_as_bid", "bilateral", "bilateral_admm", "sdr"]
_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
# Every prosumer's EV charges between these hours at up to this power (runner/population.py draws the energy).
EV_EARLIEST_H, EV_DEADLINE_H, EV_P_MAX_KW = 17.0, 23.5, 7.2
# pandas keeps times as int64 nanoseconds: every simulated time must lie in this span.
FIRST_TIME, LAST_TIME = datetime(1678, 1, 1), datetime(2262, 4, 11)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MarketConfig(Model):
    """Layer I P2P market of a feeder."""

    mechanism: Mechanism = "auction"
    k: float = Field(0.5, ge=0.0, le=1.0, description="k of the k-double auction price rule")
    trade_cost_per_kwh: float = Field(
        0.0, ge=0.0, description="bilateral market: network charge per kWh per unit electrical distance"
    )


class CommunityBatteryConfig(Model):
    """A battery owned and run by the feeder's community VPP, connected at one bus of the feeder (issue #15).

    The VPP dispatches it: its baseline stores the community's surplus and covers its deficit, it backs
    ancillary offers (reg_down while the community is long, spin and reg_up from its stored energy), delivers
    deployments and Layer III trades, and absorbs (discharges) at over- (under-) voltage. Its power enters the
    feeder's power flow at ``bus`` and the VPP's metered delivery; its energy is settled with the utility and
    passed to the members with the VPP's revenue."""

    kwh: float = Field(gt=0.0, description="usable energy capacity, kWh")
    kw: float = Field(gt=0.0, description="charge and discharge power limit, kW")
    bus: str = Field(min_length=1, description="OpenDSS bus it connects to (all its phases)")
    soc_init_frac: float = Field(0.5, ge=0.0, le=1.0, description="state of charge at the start, share of kwh")
    eta_charge: float = Field(0.95, gt=0.0, le=1.0, description="share of the energy drawn that is stored")
    eta_discharge: float = Field(0.95, gt=0.0, le=1.0, description="share of the energy taken out that is delivered")


class VppConfig(Model):
    """The feeder's community VPP (Layer II)."""

    min_offer_kw: float = Field(100.0, ge=0.0, description="minimum ancillary offer size (FERC Order 2222)")
    fee_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="documented platform cost kept from revenue")
    delivery_risk: float = Field(0.02, ge=0.0, le=1.0,
                                 description="expected fraction of an award not delivered (prices offers)")
    corrective: bool = True
    community_battery: CommunityBatteryConfig | None = Field(
        None, description="a battery run by the VPP on the feeder ({kwh, kw, bus}); null: none")


class PreferenceConfig(Model):
    """Prosumers' stated preferences in the bilateral P2P market (product differentiation, issue #15).

    A premium is what a buyer is willing to pay per kWh above its limit price for energy from a seller of a
    class; premia of the classes a seller belongs to add up. Only the ``bilateral`` and ``bilateral_admm``
    mechanisms honour them (federates/vpp/preferences.py, federates/vpp/p2p_market.py)."""

    share: float = Field(0.0, ge=0.0, le=1.0, description="seeded share of the feeder's prosumers that hold the "
                         "class premia below (the same prosumers in every mode and run of a seed)")
    pv_premium_per_kwh: float = Field(0.0, ge=0.0, description="a holder's premium for energy from a seller with PV")
    near_premium_per_kwh: float = Field(0.0, ge=0.0, description="a holder's premium for energy from a near seller")
    near_distance_pu: float = Field(
        0.005, ge=0.0, description="a seller is near when its electrical distance (base-case voltage drop from the "
        "substation, pu, as the network charge uses) differs from the buyer's by at most this")
    named: dict[str, dict[str, float]] = Field(
        {}, description="premia of named prosumers for named sellers, {buyer: {seller: premium_per_kwh}}, added to "
        "any class premium; names as in results/placement.csv (e.g. suburb_p003)")

    @field_validator("named")
    @classmethod
    def _named_premia(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        bad = {f"{b} -> {s}": w for b, row in v.items() for s, w in row.items() if w < 0 or b == s}
        if bad:
            raise ValueError(f"premia {bad} must be >= 0 and name a seller other than the buyer")
        return v

    @property
    def stated(self) -> bool:
        """Whether any prosumer holds a premium."""
        classes = self.share > 0 and (self.pv_premium_per_kwh > 0 or self.near_premium_per_kwh > 0)
        return classes or any(w > 0 for row in self.named.values() for w in row.values())

    @property
    def largest_premium_per_kwh(self) -> float:
        """The most a buyer may add for one seller: both class premia plus its largest named premium."""
        named = max((w for row in self.named.values() for w in row.values()), default=0.0)
        return self.pv_premium_per_kwh + self.near_premium_per_kwh + named


class ProfileConfig(Model):
    """Time series of one's own for the prosumers whose names match ``match`` (issue #17). A file is CSV (or
    Parquet, by the suffix .parquet) with columns ``time`` (ISO datetime in the scenario's local time without UTC
    offset, or seconds since the start) and ``p_kw`` (kW, finite, >= 0) at any resolution, covering the run. Rows
    finer than 5 minutes are averaged over each 5-minute tick (each value holds until the next row's time); coarser
    rows are interpolated linearly at each tick's start. Past the run's end, where the HEMS looks 24 h ahead, a
    file that stops repeats its value of a day earlier (in a run's first day: its last value). The HEMS forecast is
    the profile times the seeded forecast error, as for generated profiles. `harmony validate` reads every file.
    """

    match: str = Field(min_length=1, description="prosumer names it applies to, a shell pattern (fnmatch) such as "
                       "suburb_p00* or suburb_p003; names as in results/placement.csv")
    load: Path | None = Field(None, description="inflexible load file (time, p_kw); replaces the generated load")
    pv: Path | None = Field(None, description="PV output file (time, p_kw); replaces the generated PV, and gives "
                            "PV to a prosumer drawn without")
    ev: Path | None = Field(None, description="EV charging file (time, p_kw); replaces the drawn (shiftable) EV "
                            "with charging as given, added to the load (load_kw)")

    @model_validator(mode="after")
    def _some_file(self):
        if self.load is None and self.pv is None and self.ev is None:
            raise ValueError(f"profile for {self.match!r} gives no file; set load, pv and/or ev to a CSV or Parquet "
                             "file (time, p_kw)")
        return self


class PopulationConfig(Model):
    """How prosumers are generated and placed on the feeder's loads (seeded)."""

    placement: Literal["all"] | int | float | list[str] = Field(
        20, description='"all" residential loads, a count, a fraction in (0, 1], or a list of load names'
    )
    daily_kwh: tuple[float, float] = Field(
        (6.0, 14.0), description="[low, high] (0 <= low <= high) a house's daily consumption is drawn from")
    pv_share: float = Field(0.8, ge=0.0, le=1.0)
    pv_kwp: tuple[float, float] = Field((4.0, 8.0), description="[low, high] PV size per house; a size of 0 "
                                        "(e.g. [0, 0]) means no PV")
    battery_share: float = Field(0.6, ge=0.0, le=1.0)
    battery_kwh: tuple[float, float] = Field((5.0, 13.5), description="[low, high] battery capacity per house; "
                                             "a capacity of 0 means no battery")
    ev_share: float = Field(0.3, ge=0.0, le=1.0)
    ev_kwh: tuple[float, float] = Field(
        (6.0, 14.0), description=f"[low, high] EV energy per evening, charged {EV_EARLIEST_H:g}-{EV_DEADLINE_H:g} h "
        f"at up to {EV_P_MAX_KW:g} kW, so high <= {EV_P_MAX_KW * (EV_DEADLINE_H - EV_EARLIEST_H):g}; 0 means no EV")
    dishwasher_share: float = Field(0.5, ge=0.0, le=1.0)
    preferences: PreferenceConfig = Field(PreferenceConfig(), description="premia prosumers pay for energy from "
                                          "preferred sellers in the bilateral market (default: none)")
    profiles: list[ProfileConfig] = Field(
        [], description="load, PV and EV time series of one's own for prosumers matched by name ([{match, load, pv, "
        "ev}]); where entries match the same prosumer, the later one's files win")

    @field_validator("daily_kwh", "pv_kwp", "battery_kwh", "ev_kwh")
    @classmethod
    def _range(cls, v: tuple[float, float], info) -> tuple[float, float]:
        low, high = v
        if not 0.0 <= low <= high:
            a, b = sorted((abs(low), abs(high)))
            raise ValueError(f"write the range as [low, high] with 0 <= low <= high, e.g. [{a:g}, {b:g}]")
        most = EV_P_MAX_KW * (EV_DEADLINE_H - EV_EARLIEST_H)
        if info.field_name == "ev_kwh" and high > most:
            raise ValueError(f"an EV charges at most {EV_P_MAX_KW:g} kW from {EV_EARLIEST_H:g} h to "
                             f"{EV_DEADLINE_H:g} h, so at most {most:g} kWh; got up to {high:g} kWh, lower ev_kwh")
        return v

    @field_validator("placement", mode="before")
    @classmethod
    def _not_bool(cls, v):
        if isinstance(v, bool):  # before validation: the union would read true as the count 1
            raise ValueError("placement must be 'all', a count, a fraction or a list of load names")
        return v

    @field_validator("placement")
    @classmethod
    def _placement(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError(f"a count of prosumers must be >= 1, got {v}")
        if isinstance(v, float) and not 0.0 < v <= 1.0:
            raise ValueError(f"a fraction of loads must be in (0, 1], got {v}")
        return v


class FeederConfig(Model):
    """One distribution feeder (an OpenDSS model), its prosumers, P2P market and VPP."""

    name: str = Field(pattern=_NAME_PATTERN, description="lower-case identifier; federates are named after it")
    master: Path = Field(description="OpenDSS master file, relative to the scenario file")
    prosumers: PopulationConfig = Field(PopulationConfig(), description="how prosumers are generated and placed")
    market: MarketConfig | None = Field(None, description="overrides the scenario's market for this feeder")
    vpp: VppConfig = VppConfig()
    v_min_pu: float = Field(0.95, gt=0.0, description="lowest allowed service voltage (ANSI C84.1 range A)")
    v_max_pu: float = Field(1.05, gt=0.0, description="highest allowed service voltage (ANSI C84.1 range A)")
    max_iterations: int = Field(100, ge=1, description="OpenDSS max power-flow iterations")
    max_control_iterations: int = Field(100, ge=1, description="OpenDSS max control iterations")
    on_nonconvergence: Literal["continue", "stop"] = Field(
        "continue", description="after the documented retry: flag the step and go on, or stop the run")
    strict: bool = Field(False, description="raise on a power-balance check failure instead of logging it")
    tie_bus: str | None = Field(None, description="bus where the tie line to the other feeders connects "
                                "(needed when vpp_market.physical is tie)")

    @model_validator(mode="after")
    def _voltage_range(self):
        if not self.v_min_pu < self.v_max_pu:
            raise ValueError(f"v_min_pu {self.v_min_pu} must be below v_max_pu {self.v_max_pu}")
        return self


class IsoConfig(Model):
    """The ISO ancillary-services market (Layer II counterpart)."""

    prices: Literal["clear", "csv"] = Field(
        "clear", description="clear: co-optimised LP with a synthetic conventional stack; csv: historical prices")
    price_csv: Path | None = Field(None, description="price file (interval_ending, reg_up, reg_down, spin; $/MW-h)")
    requirement_kw: dict[str, float] = Field({"reg_up": 1500.0, "reg_down": 1500.0, "spin": 2500.0},
                                             description="ISO requirement per product, kW")
    requirement_profile: list[float] = Field(
        [0.8] * 6 + [1.2] * 3 + [1.0] * 8 + [1.2] * 4 + [0.9] * 3, min_length=24, max_length=24,
        description="24 hourly multipliers of requirement_kw (local time): needs peak in the morning and evening "
        "ramps, so prices from the supply stack follow")
    conventional_units: int = Field(8, ge=1, description="units in the seeded conventional supply stack")
    penalty_multiplier: float = Field(
        10.0, ge=0.0, description="penalty = shortfall x clearing price x multiplier x duration (10: a stand-in "
        "for the real-time cost of replacing undelivered reserve)")
    regulation_csv: Path | None = Field(
        None, description="regulation signal from a CSV (interval_ending, regulation in [-1, 1]) instead of the "
        "seeded synthetic one; it must cover the run")

    @model_validator(mode="after")
    def _csv_needed(self):
        if self.prices == "csv" and self.price_csv is None:
            raise ValueError("prices: csv needs price_csv: PATH (e.g. an ISO price file with reg_up, reg_down, spin)")
        unknown = set(self.requirement_kw) - set(PRODUCTS)
        if unknown:
            raise ValueError(f"requirement_kw has unknown products {sorted(unknown)}; use {list(PRODUCTS)}")
        return self

    @field_validator("requirement_kw")
    @classmethod
    def _requirement(cls, v: dict[str, float]) -> dict[str, float]:
        negative = {p: kw for p, kw in v.items() if kw < 0}
        if negative:
            raise ValueError(f"requirement {negative} kW is negative; give every requirement in kW >= 0")
        return v

    @field_validator("requirement_profile")
    @classmethod
    def _profile(cls, v: list[float]) -> list[float]:
        negative = [f for f in v if f < 0]
        if negative:
            raise ValueError(f"negative multipliers {negative}; give 24 hourly multipliers >= 0")
        return v


class VppMarketConfig(Model):
    """The inter-VPP market (Layer III)."""

    enabled: bool = Field(True, description="with mode full: run the inter-VPP market")
    mechanism: Literal["auction", "bilateral"] = Field("auction", description="clearing, reusing Layer I code")
    physical: Literal["financial", "tie"] = Field(
        "financial", description="financial: no direct connection, wheeling charge; tie: limited by a tie line")
    tie_capacity_kw: float = Field(250.0, gt=0.0, description="tie-line capacity (physical: tie)")
    wheeling_charge_per_kwh: float = Field(0.01, ge=0.0, description="per-kWh charge (physical: financial)")


TransmissionCase = Literal["case4gs", "case6ww", "case9", "case14", "case24_ieee_rts", "case30", "case39", "case57",
                          "case118", "case300"]  # the PYPOWER cases (federates/transmission/model.py CASES)


class OltcConfig(Model):
    """The substation's on-load tap changer (``federates.transmission.model.Oltc``)."""

    band_pu: float = Field(0.01, gt=0, le=0.1, description="half-width of the dead band around the feeder's own "
                           "source voltage (its master's Vsource pu) within which the tap stays")
    step_pu: float = Field(0.00625, gt=0, le=0.05, description="ratio change per tap step (0.625 %: 32 steps "
                           "over +/-10 %)")
    max_steps: int = Field(16, ge=1, le=64, description="steps either way from the fixed tap")


class TransmissionConfig(Model):
    """A transmission system under the feeders (T&D co-simulation, ``federates/transmission``): every 5 minutes its
    AC power flow (PYPOWER) takes each attached feeder's head power, ``feeders_per_bus`` times, at its bus on top
    of the case's own load, and gives each feeder its source voltage for the next interval."""

    case: TransmissionCase = Field(description="PYPOWER case (IEEE test systems), e.g. case39 (New England 39-bus)")
    bus_of: dict[str, int] = Field(min_length=1, description="feeder name -> bus number of the case it hangs on; "
                                   "feeders not named keep their own source voltage")
    feeders_per_bus: int | dict[str, int] = Field(
        1, description="identical copies of the feeder on its bus (one number for all, or feeder -> number): the "
        "bus load grows by copies x the feeder's head power, so a community is visible at transmission scale")
    load_shape: Literal["background", "flat"] = Field(
        "background", description="background: the case's loads and non-slack dispatch follow the feeders' "
        "background time-of-day shape (peak 1.0 = the case as given); flat: the case as given all day")
    max_iterations: int = Field(30, ge=1, description="Newton-Raphson iterations of the transmission power flow")
    oltc: OltcConfig | None = Field(None, description="an on-load tap changer at every attached feeder's "
                                    "substation, holding its source voltage near the master's own; absent: fixed "
                                    "taps, the transmission bus's voltage passes through")

    @field_validator("feeders_per_bus")
    @classmethod
    def _positive_copies(cls, v: int | dict[str, int]) -> int | dict[str, int]:
        counts = v.values() if isinstance(v, dict) else [v]
        bad = [c for c in counts if c < 1]
        if bad:
            raise ValueError(f"feeders_per_bus must be whole numbers >= 1 (identical feeders on the bus), got {bad[0]}")
        return v

    def copies(self, feeder: str) -> int:
        return self.feeders_per_bus if isinstance(self.feeders_per_bus, int) else self.feeders_per_bus[feeder]


class FederationConfig(Model):
    """How the federation is split into processes."""

    prosumers_per_federate: int | None = Field(
        None, ge=1, description="prosumers hosted by one prosumer federate; null: `harmony build` chooses it "
        "from the machine's cores and available memory and says so")
    broker_port: int = Field(23404, ge=1024, le=65535,
                             description="broker port for `harmony build`; `harmony run` picks a free one")
    log_level: Literal["error", "warning", "summary", "connections", "debug"] = Field(
        "warning", description="HELICS log level of every federate")


def _default_tariff() -> TariffConfig:
    return TariffConfig(
        retail_tou=[TouPeriod(start_h=0, price_per_kwh=0.12), TouPeriod(start_h=7, price_per_kwh=0.18),
                    TouPeriod(start_h=17, price_per_kwh=0.30), TouPeriod(start_h=21, price_per_kwh=0.15)],
        buyback_price_per_kwh=0.04,
    )


class Scenario(Model):
    """A whole run: when, where, which feeders and prosumers, which markets."""

    name: str = Field("scenario", pattern=_NAME_PATTERN, description="lower-case identifier, names the run")
    start: datetime = Field(datetime(2024, 6, 21), description="simulated start (local time of the location)")
    hours: float = Field(24.0, gt=0.0, description="simulated span, a whole number of 5-minute ticks, ending "
                         f"before {LAST_TIME:%Y-%m-%d}; `harmony validate` also checks that it fits in memory")
    seed: int = Field(0, ge=0, description="seed (>= 0) of every random source (weather, loads, signals, placement)")
    mode: Mode = Field(
        "full", description="topdown/netmetering: utility only; layer1: + P2P; layer12: + VPP/ISO; full: + Layer III")
    location: Location = Field(
        Location(latitude_deg=35.47, longitude_deg=-97.52, timezone="America/Chicago"),
        description="site of the prosumers (sun position for PV)")
    tariff: TariffConfig = Field(default_factory=_default_tariff, description="utility retail and buy-back")
    market: MarketConfig = Field(MarketConfig(), description="Layer I market of every feeder (a feeder may override)")
    feeders: list[FeederConfig] = Field(min_length=1, description="one VPP and one P2P market per feeder")
    iso: IsoConfig = Field(IsoConfig(), description="ISO ancillary market")
    vpp_market: VppMarketConfig = Field(VppMarketConfig(), description="inter-VPP market (Layer III)")
    federation: FederationConfig = Field(FederationConfig(), description="process layout of the federation")
    transmission: TransmissionConfig | None = Field(
        None, description="a transmission system under the feeders (T&D co-simulation); null: none, each feeder "
        "keeps its own source voltage")

    @field_validator("start")
    @classmethod
    def _local_start(cls, v: datetime) -> datetime:
        if v.tzinfo is not None:
            raise ValueError(f"start is local time of the location; drop the UTC offset from {v.isoformat()}")
        if not FIRST_TIME <= v < LAST_TIME:
            raise ValueError(f"start must lie between {FIRST_TIME:%Y-%m-%d} and {LAST_TIME:%Y-%m-%d}")
        return v

    @field_validator("hours")
    @classmethod
    def _whole_ticks(cls, v: float, info) -> float:
        if round(v * 3600) % 300 or round(v * 3600) < 300:
            raise ValueError("hours must be a whole number (>= 1) of 5-minute ticks, e.g. 0.5, 1 or 24")
        start = info.data.get("start")
        if isinstance(start, datetime) and v > (LAST_TIME - start) / timedelta(hours=1):
            raise ValueError(f"a run of {v:g} h from {start:%Y-%m-%d} would end after {LAST_TIME:%Y-%m-%d}, "
                             "the last day the simulation's clock can represent; shorten hours")
        return v

    @model_validator(mode="after")
    def _unique_feeders(self):
        names = [f.name for f in self.feeders]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"feeder names must be unique, repeated: {dup}")
        return self

    @model_validator(mode="after")
    def _preferences(self):
        """Premia need a bilateral market, and a buyer's premia for one seller must fit in the price band."""
        bilateral = ("bilateral", "bilateral_admm")
        wrong = [f"feeders.{i}.prosumers.preferences" for i, f in enumerate(self.feeders)
                 if f.prosumers.preferences.stated and self.market_of(f).mechanism not in bilateral]
        if wrong:
            raise ValueError(f"{wrong} state premia, which only the bilateral market honours; set market.mechanism: "
                             "bilateral (or bilateral_admm), or remove the premia")
        band = min(p.price_per_kwh for p in self.tariff.retail_tou) - self.tariff.buyback_price_per_kwh
        for i, f in enumerate(self.feeders):
            most = f.prosumers.preferences.largest_premium_per_kwh
            if most > band:
                raise ValueError(f"feeders.{i}.prosumers.preferences: a buyer's premia for one seller add up to "
                                 f"{most:g} per kWh, more than the price band (lowest retail - buy-back = {band:g}); "
                                 "lower them")
        return self

    @model_validator(mode="after")
    def _tie_buses(self):
        if self.uses_tie:
            missing = [f"feeders.{i}.tie_bus" for i, f in enumerate(self.feeders) if not f.tie_bus]
            if missing:
                raise ValueError(f"vpp_market.physical is tie, so {missing} must name the bus where the tie line "
                                 "connects (e.g. lv_busbar), or set vpp_market.physical: financial")
        return self

    @model_validator(mode="after")
    def _transmission_feeders(self):
        tr = self.transmission
        if tr is None:
            return self
        names = [f.name for f in self.feeders]
        unknown = [f for f in tr.bus_of if f not in names]
        if unknown:
            raise ValueError(f"transmission.bus_of names {unknown}, which are not feeders of the scenario {names}; "
                             "use the feeders' names")
        if isinstance(tr.feeders_per_bus, dict) and set(tr.feeders_per_bus) != set(tr.bus_of):
            raise ValueError(f"transmission.feeders_per_bus names {sorted(tr.feeders_per_bus)} but bus_of names "
                             f"{sorted(tr.bus_of)}; give a number for each feeder of bus_of (or one number for all)")
        return self

    @property
    def uses_tie(self) -> bool:
        return self.mode == "full" and self.vpp_market.enabled and self.vpp_market.physical == "tie"

    @property
    def duration_s(self) -> int:
        return round(self.hours * 3600)

    def market_of(self, feeder: FeederConfig) -> MarketConfig:
        return feeder.market or self.market

    def tariff_for_mode(self) -> TariffConfig:
        """The tariff prosumers face: in mode netmetering, exports are credited at the retail rate."""
        if self.mode != "netmetering":
            return self.tariff
        return self.tariff.model_copy(update={"net_metering": True})


# ---- loading -------------------------------------------------------------------------------------------------
def read_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping, or raise ConfigError naming the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read scenario file: {exc.strerror}; check the path", str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at position {exc.start}); "
                          "save the scenario as UTF-8 YAML or JSON", str(path)) from None
    import yaml  # here: the federates read JSON configs only

    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}", str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of scenario fields (name, feeders, ...)", str(path))
    return data


def apply_override(data: dict[str, Any], assignment: str, source: str = "--set") -> None:
    """Apply ``a.b.0.c=value`` to nested dicts/lists in place; the value is parsed as YAML (numbers, lists...)."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise ConfigError(f"{source} {assignment!r}: write PATH=VALUE, e.g. market.mechanism=auction")
    keys = path.split(".")
    node: Any = data
    for depth, key in enumerate(keys[:-1]):
        node = _child(node, key, keys[: depth + 1], source, create=True)
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{source} {assignment!r}: the value {raw!r} is not valid YAML ({reason}); "
                          "quote text and close lists, e.g. market.k=0.5 or feeders.0.prosumers.placement=[a, b]"
                          ) from None
    last = keys[-1]
    if isinstance(node, list):
        node[_index(node, last, keys, source)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{source} {assignment!r}: {'.'.join(keys[:-1])} is {node!r}, not a mapping, so it has "
                          f"no field {last!r}; set {'.'.join(keys[:-1])}=VALUE or a field of a mapping")


def _child(node: Any, key: str, where: list[str], source: str, create: bool):
    if isinstance(node, list):
        return node[_index(node, key, where, source)]
    if not isinstance(node, dict):
        parent = ".".join(where[:-1]) or "the scenario"
        raise ConfigError(f"{source} {'.'.join(where)}: {parent} is {node!r}, not a mapping, so it has no field "
                          f"{key!r}; check the path against docs/scenario.md")
    if key not in node and create:
        node[key] = {}
    return node[key]


def _index(node: list, key: str, where: list[str], source: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise ConfigError(f"{source} {'.'.join(where)}: {key!r} is not an index of a list of {len(node)} items")
    return int(key)


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read, override, validate and resolve a scenario file. Raises ConfigError listing every problem."""
    path = Path(path).resolve()
    data = read_mapping(path)
    problems = []
    for assignment in overrides:
        try:
            apply_override(data, assignment)
        except ConfigError as exc:
            problems += exc.problems
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems += format_validation_error(exc) + _raw_path_problems(data, path.parent)
    if problems:
        raise ConfigError(problems, str(path))
    return resolve_paths(scenario, path.parent, str(path))


def _raw_path_problems(data: dict[str, Any], base: Path) -> list[str]:
    """Missing feeder files, found in the raw data, so they are reported with the schema problems."""
    problems = []
    feeders = data.get("feeders")
    for i, feeder in enumerate(feeders if isinstance(feeders, list) else []):
        master = feeder.get("master") if isinstance(feeder, dict) else None
        if isinstance(master, str) and not (base / master).is_file():
            problems.append(_missing(f"feeders.{i}.master", master, base / master))
    return problems


def _missing(where: str, given: str, full: Path) -> str:
    return (f"{where}: file {given!r} not found (looked at {full.resolve()}); fix the path, "
            "which is relative to the scenario file")


def format_validation_error(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling against docs/scenario.md)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        problems.append(f"{where}: {msg} (got {shown})")
    return problems


def _resolve_profiles(pop: PopulationConfig, where: str, resolve) -> PopulationConfig:
    if not pop.profiles:
        return pop
    files = ("load", "pv", "ev")
    profiles = [p.model_copy(update={k: resolve(getattr(p, k), f"{where}.profiles.{j}.{k}") for k in files})
                for j, p in enumerate(pop.profiles)]
    return pop.model_copy(update={"profiles": profiles})


def resolve_paths(scenario: Scenario, base: Path, source: str) -> Scenario:
    """Make every path absolute (relative to ``base``) and check the files exist."""
    problems = []

    def resolve(p: Path | None, where: str) -> Path | None:
        if p is None:
            return None
        full = (base / p).resolve() if not p.is_absolute() else p
        if not full.is_file():
            problems.append(_missing(where, str(p), full))
        return full

    feeders = [f.model_copy(update={"master": resolve(f.master, f"feeders.{i}.master"),
                                    "prosumers": _resolve_profiles(f.prosumers, f"feeders.{i}.prosumers", resolve)})
               for i, f in enumerate(scenario.feeders)]
    iso = scenario.iso.model_copy(update={
        "price_csv": resolve(scenario.iso.price_csv, "iso.price_csv"),
        "regulation_csv": resolve(scenario.iso.regulation_csv, "iso.regulation_csv"),
    })
    if problems:
        raise ConfigError(problems, source)
    return scenario.model_copy(update={"feeders": feeders, "iso": iso})
