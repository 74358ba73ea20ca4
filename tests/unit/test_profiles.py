"""A scenario's own load, PV and EV time series (issue #17): resampling to the 5-minute ticks, validation, which
prosumers a pattern picks, and that the HEMS forecast comes from the custom profile as from a generated one."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from federates.common.config import ProfileConfig, Scenario, load_scenario
from federates.common.errors import ConfigError
from federates.prosumer.devices import LoadConfig, Location, ProsumerConfig, read_profile_csv
from federates.prosumer.fleet import ProsumerFleet
from runner.cli import main
from runner.population import make_prosumers
from runner.profiles import profile_problems

START = datetime(2024, 6, 21, 10, 0)
SMALL = Path(__file__).resolve().parents[1] / "e2e" / "small.yaml"   # 2024-06-21 10:00, 1.5 h, two LV feeders


def _csv(tmp_path: Path, rows: list[tuple], name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_text("time,p_kw\n" + "".join(f"{t},{p}\n" for t, p in rows))
    return path


# ---- resampling ----------------------------------------------------------------------------------------------
def test_a_15_minute_file_is_interpolated_at_each_5_minute_tick(tmp_path):
    path = _csv(tmp_path, [("2024-06-21 10:00", 1.0), ("2024-06-21 10:15", 2.0), ("2024-06-21 10:30", 4.0)])
    got = read_profile_csv(path, START, 6, 300)
    # ticks 10:00, 10:05, ..., 10:25: on the line from 1 to 2 (10:00-10:15), then from 2 to 4
    np.testing.assert_allclose(got, [1.0, 4 / 3, 5 / 3, 2.0, 8 / 3, 10 / 3])


def test_a_1_minute_file_is_averaged_over_each_tick(tmp_path):
    path = _csv(tmp_path, [(f"2024-06-21 10:{m:02d}", m) for m in range(10)])
    # each value holds for its minute: [10:00, 10:05) averages 0..4, [10:05, 10:10) averages 5..9
    np.testing.assert_allclose(read_profile_csv(path, START, 2, 300), [2.0, 7.0])


def test_times_in_seconds_since_the_start_and_parquet_read_the_same(tmp_path):
    seconds = _csv(tmp_path, [(0, 1.0), (900, 2.0), (1800, 4.0)])
    table = pd.DataFrame({"time": pd.to_datetime(["2024-06-21 10:00", "2024-06-21 10:15", "2024-06-21 10:30"]),
                          "p_kw": [1.0, 2.0, 4.0]})
    table.to_parquet(tmp_path / "p.parquet")
    expected = [1.0, 4 / 3, 5 / 3, 2.0, 8 / 3, 10 / 3]
    np.testing.assert_allclose(read_profile_csv(seconds, START, 6, 300), expected)
    np.testing.assert_allclose(read_profile_csv(tmp_path / "p.parquet", START, 6, 300), expected)


def test_the_look_ahead_past_the_file_repeats_the_day_before_or_holds(tmp_path):
    path = _csv(tmp_path, [(300 * k, k) for k in range(6)])               # 10:00-10:25, 5-minute rows
    held = read_profile_csv(path, START, 9, 300, run_steps=6)
    np.testing.assert_allclose(held, [0, 1, 2, 3, 4, 5, 5, 5, 5])         # shorter than a day: the last value
    day = _csv(tmp_path, [(300 * k, k % 288) for k in range(288)], "day.csv")
    np.testing.assert_allclose(read_profile_csv(day, START, 290, 300, run_steps=288)[288:], [0, 1])


@pytest.mark.parametrize("rows, needle", [
    ([("2024-06-21 10:00", 1.0), ("2024-06-21 10:15", 1.0)], "must cover the run"),
    ([("2024-06-21 10:05", 1.0), ("2024-06-21 11:00", 1.0)], "must cover the run"),
    ([("2024-06-21 10:00", 1.0), ("2024-06-21 11:00", -0.5)], "got -0.5"),
    ([("2024-06-21 10:00", 1.0), ("2024-06-21 11:00", "nan")], "finite and non-negative"),
    ([("2024-06-21 10:00", 1.0), ("2024-06-21 11:00", "lots")], "got nan at time 2024-06-21 11:00"),
    ([("2024-06-21 10:00+02:00", 1.0), ("2024-06-21 11:00+02:00", 1.0)], "drop the offsets"),
    ([("2024-06-21 10:00", 1.0), ("2024-06-21 10:00", 1.0)], "repeats"),
    ([("ten o'clock", 1.0), ("eleven", 1.0)], "seconds since the start"),
])
def test_a_bad_file_is_refused_naming_it_and_the_fix(tmp_path, rows, needle):
    path = _csv(tmp_path, rows)
    with pytest.raises(ConfigError, match=needle) as info:
        read_profile_csv(path, START, 6, 300)
    assert str(path) in str(info.value)


def test_a_file_without_p_kw_is_refused(tmp_path):
    (tmp_path / "x.csv").write_text("time,kw\n0,1\n")
    with pytest.raises(ConfigError, match=r"missing column\(s\) \['p_kw'\]"):
        read_profile_csv(tmp_path / "x.csv", START, 6, 300)


# ---- who gets which file -------------------------------------------------------------------------------------
def test_a_pattern_replaces_the_matched_prosumers_files_and_nobody_elses(tmp_path):
    load, ev = _csv(tmp_path, [(0, 3.0), (7200, 3.0)]), _csv(tmp_path, [(0, 7.0), (7200, 7.0)], "ev.csv")
    pv = _csv(tmp_path, [(0, 0.0), (3600, 2.5), (7200, 0.0)], "pv.csv")
    plain = load_scenario(SMALL, ["feeders.0.prosumers.ev_share=1.0"])
    custom = plain.feeders[0].model_copy(deep=True)
    custom.prosumers.profiles = [ProfileConfig(match="suburb_p00[01]", load=load),
                                 ProfileConfig(match="suburb_p001", pv=pv, ev=ev)]
    before = make_prosumers(plain.feeders[0], list("abcd"), seed=3)
    after = make_prosumers(custom, list("abcd"), seed=3)
    assert after[2:] == before[2:]                                   # unmatched: the same draws
    assert after[0].load.csv == load and after[0].pv == before[0].pv
    assert after[1].load.csv == load and after[1].load.ev_csv == ev and after[1].pv.csv == pv
    assert "ev" in [f.name for f in before[1].flex_loads] and "ev" not in [f.name for f in after[1].flex_loads]
    assert after[1].pv.kwp == (before[1].pv.kwp if before[1].pv else 2.5)


def test_profiles_are_relative_to_the_scenario_and_checked_at_validate(tmp_path):
    _csv(tmp_path, [("2024-06-21 10:00", 3.0), ("2024-06-21 11:00", 3.0)], "short.csv")  # run ends 11:30
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SMALL.read_text().replace("../../feeders", str(SMALL.parents[2] / "feeders")))
    sets = ["--set", "feeders.0.prosumers.profiles=[{match: suburb_p000, load: short.csv}, {match: suburb_x*, "
            "pv: short.csv}]"]
    sc = load_scenario(scenario, sets[1:])
    assert sc.feeders[0].prosumers.profiles[0].load == tmp_path / "short.csv"
    problems = profile_problems(sc, [6, 6])
    assert len(problems) == 3 and problems[0].startswith("feeders.0.prosumers.profiles.0.load: ")
    result = CliRunner().invoke(main, ["validate", str(scenario), *sets])
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert "feeders.0.prosumers.profiles.0.load" in out and "short.csv" in out and "must cover the run" in out
    assert "'suburb_x*' matches none of the feeder's prosumers" in out and "Traceback" not in out
    missing = CliRunner().invoke(main, ["validate", str(scenario), "--set",
                                        "feeders.0.prosumers.profiles=[{match: suburb_p000, load: nope.csv}]"])
    assert missing.exit_code == 2 and "feeders.0.prosumers.profiles.0.load: file 'nope.csv' not found" in " ".join(
        missing.output.split())


# ---- the fleet: realised and forecast ------------------------------------------------------------------------
def test_the_hems_forecast_is_the_custom_load_times_the_same_seeded_error(tmp_path):
    sc = Scenario(feeders=[{"name": "x", "master": "m.dss"}])
    path = _csv(tmp_path, [(0, 3.0), (1800, 3.0)])
    loc = Location(latitude_deg=35.5, longitude_deg=-97.5, timezone="America/Chicago")
    kwargs = dict(n_steps=6, seed=1, horizon_slots=2)
    generated = ProsumerFleet([ProsumerConfig(name="a")], sc.tariff, loc, START, **kwargs)
    custom = ProsumerFleet([ProsumerConfig(name="a", load=LoadConfig(csv=path))], sc.tariff, loc, START, **kwargs)
    assert np.all(custom.load_kw == 3.0)                            # run and look-ahead (held past the file)
    np.testing.assert_allclose(custom.forecast_load_kw / custom.load_kw,
                               generated.forecast_load_kw / generated.load_kw)
