"""The seeded profiles are those of the scipy-based model to the last bit: the AR(1) recursion without
scipy.signal.lfilter, the normal cdf / inverse cdf as scipy.special's ndtr / ndtri instead of scipy.stats.norm, the
load model with its per-fleet calendar and one uniform draw per appliance. The references below are the model as
it was written with scipy.signal and scipy.stats (the test may import them; the federates do not)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.stats import norm

from federates.prosumer import devices
from federates.prosumer.devices import ar1, ar1_filter, cloud_factor, forecast_error


def _bits(a: np.ndarray) -> bytes:
    """Bitwise identity (array_equal would take -0.0 for 0.0)."""
    return np.ascontiguousarray(a, dtype=float).tobytes()


def _ref_ar1(n, step_s, corr_time_s, rng):
    phi = math.exp(-step_s / corr_time_s)
    innov = rng.standard_normal(n) * math.sqrt(1.0 - phi * phi)
    z0 = rng.standard_normal()
    return lfilter([1.0], [1.0, -phi], innov, zi=[phi * z0])[0]


def _ref_raw_load_minutes(hours, rng):
    n = len(hours)
    hod = np.floor(hours).astype(int) % 24
    z = _ref_ar1(n, 60.0, 1800.0, rng)
    active = (norm.cdf(z) < devices._ACTIVE_PROB[hod]).astype(float)
    p = np.full(n, devices._STANDBY_KW)
    p += devices._FRIDGE_KW * (((np.arange(n) + rng.integers(devices._FRIDGE_PERIOD_MIN))
                                % devices._FRIDGE_PERIOD_MIN) < 15)
    p += devices._LIGHT_KW * active * devices._dark(hours % 24.0)
    for _name, kw, minutes, rate_per_h, weight in devices._APPLIANCES:
        w = np.ones(n) if weight is None else weight[hod] / weight.mean()
        starts = np.flatnonzero(rng.random(n) < active * w * rate_per_h / 60.0)
        for s in starts:
            dur = max(1, int(round(minutes * rng.uniform(0.7, 1.3))))
            p[s : s + dur] += kw
    return p * np.clip(1.0 + 0.05 * rng.standard_normal(n), 0.5, 1.5)


def _ref_cloud_factor(n_steps, step_s, cloudiness, seed):
    if cloudiness <= 0.0:
        return np.ones(n_steps)
    z = _ref_ar1(n_steps, step_s, 3600.0, np.random.default_rng(seed))
    cover = np.ones(n_steps) if cloudiness >= 1.0 else norm.cdf(z + norm.ppf(cloudiness))
    return 1.0 - 0.75 * cover**3.4


@pytest.mark.parametrize("phi", [0.0, 0.5, math.exp(-60 / 1800), math.exp(-300 / 3600), math.exp(-300 / 10800),
                                 1.0 - 1e-12, -0.7])
def test_ar1_filter_rounds_like_lfilter(phi):
    rng = np.random.default_rng(11)
    for n in (0, 1, 2, 3, 17, 582, 2910):
        for scale in (1e-300, 1e-3, 1.0, 1e6):
            x = rng.standard_normal(n) * scale
            for z0 in (0.0, -0.0, rng.standard_normal() * scale, 3.7e8):
                want = lfilter([1.0], [1.0, -phi], x, zi=[phi * z0])[0]
                assert _bits(ar1_filter(x, phi, z0)) == _bits(want), (phi, n, scale, z0)


def test_ar1_is_the_lfilter_series_for_many_seeds():
    for seed in range(300):
        n = int(np.random.default_rng(seed).integers(1, 3000))
        for step_s, corr_s in ((60.0, 1800.0), (300.0, 3600.0), (300.0, 10800.0)):
            got = ar1(n, step_s, corr_s, np.random.default_rng(seed))
            assert _bits(got) == _bits(_ref_ar1(n, step_s, corr_s, np.random.default_rng(seed))), (seed, n)


@pytest.mark.parametrize("h0, n", [(0.0, 2910), (13.25, 4320), (23.9, 180), (6.5, 1), (0.0, 60)])
def test_load_model_is_the_scipy_one_to_the_bit(h0, n):
    hours = h0 + np.arange(n) / 60.0
    # the calendar holds the model's products with active = 1 (a rounding a start decision rarely reveals)
    hod, ones = np.floor(hours).astype(int) % 24, np.ones(n)
    active_prob, light_kw, start_prob = devices._minute_calendar(h0, n)
    assert _bits(active_prob) == _bits(devices._ACTIVE_PROB[hod])
    assert _bits(light_kw) == _bits(devices._LIGHT_KW * ones * devices._dark(hours % 24.0))
    for (_name, _kw, _minutes, rate_per_h, weight), got in zip(devices._APPLIANCES, start_prob, strict=True):
        w = ones if weight is None else weight[hod] / weight.mean()
        assert _bits(got) == _bits(ones * w * rate_per_h / 60.0)
    for seed in range(60):
        got = devices._raw_load_minutes(h0, n, np.random.default_rng(seed))
        want = _ref_raw_load_minutes(hours, np.random.default_rng(seed))
        assert _bits(got) == _bits(want), (h0, n, seed)


def test_cloud_and_forecast_profiles_are_the_scipy_ones():
    for seed in range(100):
        for cloudiness in (0.0, 1e-9, 0.05, 0.3, 0.5, 0.77, 1.0 - 1e-9, 1.0):
            for n in (1, 288, 582):
                got = cloud_factor(n, 300, cloudiness, seed)
                assert _bits(got) == _bits(_ref_cloud_factor(n, 300, cloudiness, seed)), (seed, cloudiness, n)
        want = np.clip(1.0 + 0.15 * _ref_ar1(582, 300, 3 * 3600.0, np.random.default_rng(seed)), 0.0, 2.0)
        assert _bits(forecast_error(582, 300, 0.15, seed)) == _bits(want)
