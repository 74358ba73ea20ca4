"""Device configs reject infeasible input and compute what they promise (reserve floor, export credit); profiles
are seeded, physical and scaled as documented."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from pydantic import ValidationError

from federates.common.errors import ConfigError
from federates.prosumer.devices import (
    BatteryConfig,
    FlexLoadConfig,
    LoadConfig,
    Location,
    ProsumerConfig,
    PvConfig,
    TariffConfig,
    TouPeriod,
    forecast_error,
    load_profile,
    pv_profile,
)

ZURICH = Location(latitude_deg=47.37, longitude_deg=8.54, timezone="Europe/Zurich")
MIDSUMMER = datetime(2024, 6, 21)


def test_flex_load_that_cannot_fit_its_window_is_rejected():
    with pytest.raises(ValidationError, match="energy_kwh=30.0 cannot fit its window of 2 h at p_max_kw=7.0"):
        FlexLoadConfig(name="ev", energy_kwh=30, earliest_h=18, deadline_h=20, p_max_kw=7)
    ok = FlexLoadConfig(name="ev", energy_kwh=14, earliest_h=18, deadline_h=20, p_max_kw=7)  # exactly fits
    assert ok.energy_kwh == 14


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"soc_min_frac": 0.9, "soc_max_frac": 0.5}, "soc_min_frac=0.9 must be below soc_max_frac=0.5"),
        ({"soc_init_frac": 0.05}, "soc_init_frac=0.05 must lie in"),
        ({"reserve_frac": 0.99}, "reserve_frac=0.99 exceeds soc_max_frac"),
        ({"capacity_kwh": -1}, "capacity_kwh"),
        ({"p_max_kw": 0}, "p_max_kw"),
        ({"eta_charge": 1.2}, "eta_charge"),
        ({"capcity_kwh": 3}, "Extra inputs are not permitted"),
    ],
)
def test_infeasible_battery_is_rejected(kwargs, message):
    base = {"capacity_kwh": 10.0, "p_max_kw": 5.0}
    with pytest.raises(ValidationError, match=message):
        BatteryConfig(**{**base, **kwargs})


def test_other_configs_reject_bad_values():
    with pytest.raises(ValidationError, match="overnight window"):
        FlexLoadConfig(name="ev", energy_kwh=5, earliest_h=18, deadline_h=7, p_max_kw=7)
    with pytest.raises(ValidationError, match="kwp"):
        PvConfig(kwp=-2)
    with pytest.raises(ValidationError, match="unbounded profit"):
        TariffConfig(retail_tou=[TouPeriod(start_h=0, price_per_kwh=0.1)], buyback_price_per_kwh=0.2)
    with pytest.raises(ValidationError, match="repeated"):
        ProsumerConfig(
            name="p",
            flex_loads=[FlexLoadConfig(name="x", energy_kwh=1, earliest_h=0, deadline_h=2, p_max_kw=1)] * 2,
        )
    with pytest.raises(ValidationError, match="unknown timezone"):
        Location(latitude_deg=0, longitude_deg=0, timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="does not exist"):
        LoadConfig(csv="/nonexistent/load.csv")


def test_tou_retail_price_wraps_round_midnight():
    t = TariffConfig(
        retail_tou=[TouPeriod(start_h=7, price_per_kwh=0.3), TouPeriod(start_h=22, price_per_kwh=0.1)],
        buyback_price_per_kwh=0.05,
    )
    assert [t.retail_at(h) for h in (0, 6.99, 7, 21.5, 22, 31)] == [0.1, 0.1, 0.3, 0.3, 0.1, 0.3]
    np.testing.assert_array_equal(
        t.retail_array(np.array([0, 6.99, 7, 21.5, 22, 31])), [0.1, 0.1, 0.3, 0.3, 0.1, 0.3]
    )


def test_pv_profile_follows_the_sun_and_is_seeded():
    clear = pv_profile(PvConfig(kwp=5, cloudiness=0), ZURICH, MIDSUMMER, 288, 300, seed=1)
    cloudy = pv_profile(PvConfig(kwp=5, cloudiness=0.6), ZURICH, MIDSUMMER, 288, 300, seed=1)
    again = pv_profile(PvConfig(kwp=5, cloudiness=0.6), ZURICH, MIDSUMMER, 288, 300, seed=1)
    other = pv_profile(PvConfig(kwp=5, cloudiness=0.6), ZURICH, MIDSUMMER, 288, 300, seed=2)
    hours = np.arange(288) / 12
    assert clear[(hours < 4) | (hours > 22)].max() == 0.0  # night in Zurich (local time)
    assert 12.5 < hours[np.argmax(clear)] < 14.5  # solar noon ~13:30 CEST
    assert 3.0 < clear.max() <= 5.0
    assert 20 < clear.sum() / 12 < 40  # kWh on a clear midsummer day from 5 kWp
    assert np.all(cloudy <= clear + 1e-12) and cloudy.sum() < clear.sum()
    np.testing.assert_array_equal(cloudy, again)
    assert not np.array_equal(cloudy, other)


def test_load_profile_energy_shape_and_seed():
    load = load_profile(LoadConfig(daily_kwh=8.0), MIDSUMMER, 288 * 20, 300, seed=7)
    assert load.sum() * 300 / 3600 == pytest.approx(8.0 * 20)
    by_hour = load.reshape(20, 24, 12).mean(axis=(0, 2))
    assert by_hour[19] > 2 * by_hour[3] and by_hour[7] > 2 * by_hour[3]  # evening and morning peaks
    assert load.min() > 0
    np.testing.assert_array_equal(
        load, load_profile(LoadConfig(daily_kwh=8.0), MIDSUMMER, 288 * 20, 300, seed=7)
    )


def test_csv_profiles_are_interpolated_and_must_cover_the_run(tmp_path):
    path = tmp_path / "pv.csv"
    path.write_text("time,p_kw\n2024-06-21 00:00,0\n2024-06-21 01:00,3\n")
    cfg = PvConfig(kwp=3, csv=path)
    np.testing.assert_allclose(pv_profile(cfg, ZURICH, MIDSUMMER, 4, 900, seed=0), [0, 0.75, 1.5, 2.25])
    with pytest.raises(ConfigError, match="must cover the run"):
        pv_profile(cfg, ZURICH, MIDSUMMER, 8, 900, seed=0)


def test_forecast_error_has_the_configured_spread():
    e = forecast_error(200_000, 300, 0.1, seed=4)
    assert e.mean() == pytest.approx(1.0, abs=0.02)
    assert (e - 1).std() == pytest.approx(0.1, rel=0.1)
    np.testing.assert_array_equal(e, forecast_error(200_000, 300, 0.1, seed=4))


def test_battery_floor_is_the_higher_of_its_minimum_and_its_reserve():
    assert BatteryConfig(capacity_kwh=10, p_max_kw=5, soc_min_frac=0.1, reserve_frac=0.3).floor_frac == 0.3
    assert BatteryConfig(capacity_kwh=10, p_max_kw=5, soc_min_frac=0.2, reserve_frac=0.05).floor_frac == 0.2
    default = BatteryConfig(capacity_kwh=10, p_max_kw=5)
    assert (default.soc_min_frac, default.soc_max_frac, default.floor_frac) == (0.1, 0.95, 0.1)


def test_export_credit_is_the_buyback_rate_or_the_retail_rate_under_net_metering():
    tou = [TouPeriod(start_h=7, price_per_kwh=0.3), TouPeriod(start_h=22, price_per_kwh=0.1)]
    hours = np.array([0.0, 7.5, 21.9, 22.0, 30.0])  # 30 h = 6:00 next day
    billing = TariffConfig(retail_tou=tou, buyback_price_per_kwh=0.05)
    metering = TariffConfig(retail_tou=tou, buyback_price_per_kwh=0.05, net_metering=True)
    assert [billing.export_price_at(h) for h in hours] == [0.05] * 5
    np.testing.assert_array_equal(billing.export_price_array(hours), [0.05] * 5)
    assert [metering.export_price_at(h) for h in hours] == [0.1, 0.3, 0.3, 0.1, 0.1]
    np.testing.assert_array_equal(metering.export_price_array(hours), [0.1, 0.3, 0.3, 0.1, 0.1])


def test_flex_window_may_run_past_midnight_but_not_beyond_its_limit():
    overnight = FlexLoadConfig(name="ev", energy_kwh=10, earliest_h=18, deadline_h=31, p_max_kw=7)
    assert overnight.deadline_h - overnight.earliest_h == 13
    with pytest.raises(ValidationError, match="deadline|window"):
        FlexLoadConfig(name="ev", energy_kwh=1, earliest_h=10, deadline_h=10, p_max_kw=7)
