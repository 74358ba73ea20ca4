"""Bad input exits with status 2 and a message naming the field or file, the value and the fix, before anything
is launched; never a traceback (issue #11, items 5 and 6).

One row per bad input: the command line (``{small}``/``{default}`` are scenarios, ``{tmp}`` the test's folder),
the files to write first, and the words the message must contain (the field or file, and the value). Every
row runs through ``harmony validate`` (or ``run`` / ``compare`` for their own options) with ``subprocess`` and
the federation launcher disabled, so a row that got as far as launching fails.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import runner.cli
from federates.common.config import load_scenario
from federates.common.errors import ConfigError
from runner.cli import main
from runner.population import make_prosumers
from runner.preflight import (
    available_memory_bytes,
    check_out_dir,
    estimate_memory_bytes,
    memory_problems,
    preflight,
)

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "tests" / "e2e" / "small.yaml"          # 2024-06-21 10:00, 1.5 h, two LV feeders
DEFAULT = REPO / "configs" / "scenarios" / "default.yaml"

HEADER = "interval_ending,reg_up,reg_down,spin"
DAY = [f"2024-06-21 {h:02d}:00" for h in range(1, 24)] + ["2024-06-22 00:00"]   # hour ending, covers 21 June


def _prices(rows=DAY, value="8,10,1") -> str:
    return HEADER + "\n" + "".join(f"{t},{value}\n" for t in rows)


def _regulation(value="0.5") -> str:
    return "interval_ending,regulation\n" + "".join(f"{t},{value}\n" for t in DAY)


COLLAPSE = """Clear
New Circuit.collapse basekv=0.4 pu=1.0 phases=3 bus1=src MVAsc3=1 MVAsc1=1
New Line.l1 phases=3 bus1=src bus2=b1 r1=5 x1=5 r0=5 x0=5 c1=0 c0=0 length=1 units=km
New Load.house_1 phases=1 bus1=b1.1 kv=0.23 kw=5 pf=0.95
New Load.house_2 phases=1 bus1=b1.2 kv=0.23 kw=5 pf=0.95
New Load.big phases=3 bus1=b1 kv=0.4 kw=500 pf=0.9 model=1 vminpu=0.01 vlowpu=0.005
Set voltagebases=[0.4]
Calcvoltagebases
"""
PRICE = ["--set", "iso.prices=csv", "--set", "iso.price_csv={tmp}/p.csv"]
REGULATION = ["--set", "iso.regulation_csv={tmp}/r.csv"]
PROFILE_24 = "[" + ",".join(["1"] * 23 + ["-1"]) + "]"
LOCATION = "location={latitude_deg: 35, longitude_deg: -97, timezone: Mars/Base}"

# id, command line, files to write, words the message must contain
CASES = [
    # ---- command-line options (click and the schema) -------------------------------------------------------
    ("hours_not_whole_ticks", ["--hours", "0.3"], {}, ["hours", "0.3", "5-minute"]),
    ("hours_zero", ["--hours", "0"], {}, ["hours", "0"]),
    ("hours_negative", ["--hours", "-1"], {}, ["hours", "-1"]),
    ("hours_inf", ["--hours", "inf"], {}, ["hours", "inf", "finite"]),
    ("hours_nan", ["--hours", "nan"], {}, ["hours", "nan", "finite"]),
    ("hours_below_one_tick", ["--hours", "1e-300"], {}, ["hours", "1e-300", "5-minute"]),
    ("hours_past_the_clock", ["--hours", "1e9"], {}, ["hours", "1e+09", "2262"]),
    ("hours_too_much_memory", ["--hours", "2000000"], {}, ["hours", "2e+06", "GiB", "memory"]),
    ("hours_not_a_number", ["--hours", "abc"], {}, ["--hours", "abc"]),
    ("seed_negative", ["--seed", "-1"], {}, ["seed", "-1"]),
    ("seed_not_an_integer", ["--seed", "1.5"], {}, ["--seed", "1.5"]),
    ("mode_unknown", ["--set", "mode=bogus"], {}, ["mode", "bogus"]),
    ("set_without_equals", ["--set", "market.mechanism"], {}, ["market.mechanism", "PATH=VALUE"]),
    ("set_bad_yaml", ["--set", "market.k=[1"], {}, ["market.k", "[1", "not valid YAML"]),
    ("set_into_a_text_field", ["--set", "name.x=1"], {}, ["name.x", "'small'", "not a mapping"]),
    ("set_bad_index", ["--set", "feeders.3.name=x"], {}, ["feeders.3", "not an index"]),
    ("set_unknown_field", ["--set", "feeders.0.colour=red"], {}, ["feeders.0.colour", "unknown field", "red"]),
    ("set_unknown_top_field", ["--set", "colour=red"], {}, ["colour", "unknown field", "red"]),
    ("name_pattern", ["--set", "name=Bad-Name"], {}, ["name", "Bad-Name"]),
    ("start_with_utc_offset", ["--set", "start=2024-06-21T00:00:00+02:00"], {}, ["start", "UTC offset", "+02:00"]),
    ("start_before_the_clock", ["--set", "start=1500-01-01T00:00:00"], {}, ["start", "1500"]),
    ("latitude_out_of_range", ["--set", "location={latitude_deg: 91, longitude_deg: 0}"], {},
     ["location.latitude_deg", "91"]),
    ("timezone_unknown", ["--set", LOCATION], {}, ["location.timezone", "Mars/Base"]),
    ("tariff_periods_not_increasing", ["{default}", "--set", "tariff.retail_tou.1.start_h=0"], {},
     ["retail_tou", "increasing", "0"]),
    ("market_mechanism_unknown", ["--set", "market.mechanism=barter"], {}, ["market.mechanism", "barter"]),
    ("market_k_above_one", ["--set", "market.k=1.5"], {}, ["market.k", "1.5"]),
    ("market_trade_cost_negative", ["--set", "market.trade_cost_per_kwh=-0.1"], {},
     ["market.trade_cost_per_kwh", "-0.1"]),
    ("feeders_empty", ["--set", "feeders=[]"], {}, ["feeders", "at least 1"]),
    ("feeder_names_repeated", ["--set", "feeders.1.name=suburb"], {}, ["suburb", "unique"]),
    ("feeder_master_missing", ["--set", "feeders.1.master=missing.dss"], {},
     ["feeders.1.master", "missing.dss", "relative to the scenario file"]),
    ("feeder_option_missing", ["--feeder", "/nonexistent/Master.dss"], {}, ["--feeder", "/nonexistent/Master.dss"]),
    ("voltage_range_empty", ["--set", "feeders.0.v_min_pu=1.1"], {}, ["v_min_pu", "1.1"]),
    ("max_iterations_zero", ["--set", "feeders.0.max_iterations=0"], {}, ["feeders.0.max_iterations", "0"]),
    ("on_nonconvergence_unknown", ["--set", "feeders.0.on_nonconvergence=maybe"], {},
     ["on_nonconvergence", "maybe"]),
    ("placement_zero", ["--set", "feeders.0.prosumers.placement=0"], {}, ["placement", ">= 1", "0"]),
    ("placement_fraction_above_one", ["--set", "feeders.0.prosumers.placement=1.5"], {}, ["placement", "1.5"]),
    ("placement_boolean", ["--set", "feeders.0.prosumers.placement=true"], {}, ["placement", "True"]),
    ("placement_unknown_load", ["--set", "feeders.0.prosumers.placement=[house_h999]"], {},
     ["feeders.0", "house_h999"]),
    ("pv_share_above_one", ["--set", "feeders.0.prosumers.pv_share=1.5"], {}, ["pv_share", "1.5"]),
    ("battery_share_negative", ["--set", "feeders.0.prosumers.battery_share=-0.1"], {}, ["battery_share", "-0.1"]),
    ("ev_share_above_one", ["--set", "feeders.0.prosumers.ev_share=2"], {}, ["ev_share", "2"]),
    ("dishwasher_share_above_one", ["--set", "feeders.1.prosumers.dishwasher_share=2"], {},
     ["feeders.1.prosumers.dishwasher_share", "2"]),
    ("battery_kwh_negative", ["--set", "feeders.0.prosumers.battery_kwh=[-5, -1]"], {},
     ["feeders.0.prosumers.battery_kwh", "-5", "low <= high"]),
    ("battery_kwh_reversed", ["--set", "feeders.0.prosumers.battery_kwh=[13.5, 0]"], {},
     ["feeders.0.prosumers.battery_kwh", "13.5", "[0, 13.5]"]),
    ("daily_kwh_negative", ["--set", "feeders.0.prosumers.daily_kwh=[-10, -5]"], {},
     ["feeders.0.prosumers.daily_kwh", "-10"]),
    ("pv_kwp_reversed", ["--set", "feeders.1.prosumers.pv_kwp=[8, 4]"], {}, ["feeders.1.prosumers.pv_kwp", "8"]),
    ("pv_kwp_one_number", ["--set", "feeders.0.prosumers.pv_kwp=[4]"], {}, ["feeders.0.prosumers.pv_kwp", "4"]),
    ("ev_kwh_beyond_its_window", ["--set", "feeders.0.prosumers.ev_kwh=[100, 120]"], {},
     ["feeders.0.prosumers.ev_kwh", "120", "46.8"]),
    ("vpp_min_offer_negative", ["--set", "feeders.0.vpp.min_offer_kw=-1"], {}, ["min_offer_kw", "-1"]),
    ("vpp_fee_fraction_one", ["--set", "feeders.0.vpp.fee_fraction=1"], {}, ["fee_fraction", "1"]),
    ("vpp_delivery_risk_above_one", ["--set", "feeders.0.vpp.delivery_risk=2"], {}, ["delivery_risk", "2"]),
    ("iso_csv_prices_without_file", ["--set", "iso.prices=csv"], {}, ["iso", "price_csv", "prices: csv"]),
    ("iso_requirement_unknown_product", ["--set", "iso.requirement_kw.freq=5"], {}, ["requirement_kw", "freq"]),
    ("iso_requirement_negative", ["--set", "iso.requirement_kw.spin=-5"], {}, ["iso.requirement_kw", "-5"]),
    ("iso_requirement_profile_short", ["--set", "iso.requirement_profile=[1, 1]"], {},
     ["iso.requirement_profile", "24"]),
    ("iso_requirement_profile_negative", ["--set", f"iso.requirement_profile={PROFILE_24}"], {},
     ["iso.requirement_profile", "-1"]),
    ("iso_conventional_units_zero", ["--set", "iso.conventional_units=0"], {}, ["conventional_units", "0"]),
    ("iso_penalty_multiplier_negative", ["--set", "iso.penalty_multiplier=-1"], {}, ["penalty_multiplier", "-1"]),
    ("l3_mechanism_unknown", ["--set", "vpp_market.mechanism=sdr"], {}, ["vpp_market.mechanism", "sdr"]),
    ("l3_tie_capacity_zero", ["--set", "vpp_market.tie_capacity_kw=0"], {}, ["tie_capacity_kw", "0"]),
    ("l3_wheeling_negative", ["--set", "vpp_market.wheeling_charge_per_kwh=-0.01"], {},
     ["wheeling_charge_per_kwh", "-0.01"]),
    ("l3_tie_without_buses", ["--set", "vpp_market.physical=tie"], {}, ["feeders.0.tie_bus", "tie"]),
    ("l3_tie_bus_unknown", ["--set", "vpp_market.physical=tie", "--set", "feeders.0.tie_bus=nowhere",
                            "--set", "feeders.1.tie_bus=lv_busbar"], {}, ["feeders.0", "nowhere", "not a bus"]),
    ("federation_prosumers_per_federate_zero", ["--set", "federation.prosumers_per_federate=0"], {},
     ["prosumers_per_federate", "0"]),
    ("federation_broker_port_privileged", ["--set", "federation.broker_port=80"], {}, ["broker_port", "80"]),
    ("federation_log_level_unknown", ["--set", "federation.log_level=loud"], {}, ["log_level", "loud"]),
    # ---- the transmission system (T&D): schema, then the case's buses and power flow before launch ---------
    ("transmission_case_unknown", ["--set", "transmission={case: case1234, bus_of: {suburb: 4}}"], {},
     ["transmission.case", "case1234", "case39"]),
    ("transmission_bus_unknown", ["--set", "transmission={case: case39, bus_of: {suburb: 99}}"], {},
     ["transmission.bus_of.suburb", "99", "not a bus of case39"]),
    ("transmission_feeder_unknown", ["--set", "transmission={case: case39, bus_of: {nowhere: 4}}"], {},
     ["transmission.bus_of", "nowhere", "not feeders", "suburb"]),
    ("transmission_copies_zero", ["--set", "transmission={case: case39, bus_of: {suburb: 4}, feeders_per_bus: 0}"],
     {}, ["transmission.feeders_per_bus", "0", ">= 1"]),
    ("transmission_copies_negative_for_one", ["--set", "transmission={case: case39, bus_of: {suburb: 4}, "
                                              "feeders_per_bus: {suburb: -3}}"], {},
     ["transmission.feeders_per_bus", "-3", ">= 1"]),
    ("transmission_does_not_converge", ["--set", "transmission={case: case39, bus_of: {suburb: 4}, "
                                        "feeders_per_bus: 1000000}"], {},
     ["transmission.feeders_per_bus", "1000000", "does not converge", "lower"]),
    # ---- the scenario file ---------------------------------------------------------------------------------
    ("scenario_missing", ["{tmp}/nope.yaml"], {}, ["nope.yaml", "cannot read"]),
    ("scenario_is_a_folder", ["{tmp}"], {}, ["SCENARIO", "directory"]),
    ("scenario_bad_yaml", ["{tmp}/s.yaml"], {"s.yaml": "name: [x\n"}, ["s.yaml", "not valid YAML"]),
    ("scenario_bad_json", ["{tmp}/s.json"], {"s.json": "{bad"}, ["s.json", "not valid JSON"]),
    ("scenario_not_a_mapping", ["{tmp}/s.yaml"], {"s.yaml": "- a\n- b\n"}, ["s.yaml", "top level"]),
    ("scenario_invalid_utf8", ["{tmp}/s.yaml"], {"s.yaml": b"name: caf\xe9\nfeeders: []\n"},
     ["s.yaml", "UTF-8", "0xe9"]),
    ("scenario_every_problem_at_once", ["{tmp}/s.yaml"],
     {"s.yaml": "name: bad\nhours: 0.3\nfeeders:\n  - {name: a, master: nope.dss, colour: red}\n"},
     ["s.yaml", "3 problems", "hours", "0.3", "colour", "nope.dss"]),
    # ---- ISO price and regulation files (checked over the run's span before launch) -----------------------
    ("price_file_missing", ["--set", "iso.prices=csv", "--set", "iso.price_csv={tmp}/nope.csv"], {},
     ["iso.price_csv", "nope.csv"]),
    ("price_file_does_not_cover_the_run", PRICE, {"p.csv": _prices([t.replace("-21 ", "-20 ") for t in DAY[:-1]])},
     ["iso.price_csv", "p.csv", "covers", "2024-06-21 10:00"]),
    ("price_file_empty", PRICE, {"p.csv": ""}, ["iso.price_csv", "p.csv", "0 data rows"]),
    ("price_file_header_only", PRICE, {"p.csv": HEADER + "\n"}, ["p.csv", "0 data rows"]),
    ("price_file_binary", PRICE, {"p.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"}, ["p.csv", "UTF-8", "0x89"]),
    ("price_file_prose", PRICE, {"p.csv": "lorem ipsum\ndolor sit amet\n"}, ["p.csv", "'lorem ipsum'"]),
    ("price_negative", PRICE, {"p.csv": _prices(value="8,-3,1")}, ["iso.price_csv", "reg_down", "-3", ">= 0"]),
    ("price_not_a_number", PRICE, {"p.csv": _prices(DAY[:1]) + f"{DAY[1]},9,abc,1\n"},
     ["p.csv", "line 3", "'abc'"]),
    ("price_row_too_short", PRICE, {"p.csv": _prices(DAY[:1]) + f"{DAY[1]},9,1\n"}, ["p.csv", "line 3", "3 fields"]),
    ("price_rows_unsorted", PRICE, {"p.csv": _prices(DAY[1::-1])}, ["p.csv", "line 3", "not after"]),
    ("price_time_garbled", PRICE, {"p.csv": _prices(DAY[:1]) + "yesterday,9,1,1\n"}, ["p.csv", "'yesterday'"]),
    ("price_one_row", PRICE, {"p.csv": _prices(DAY[:1])}, ["p.csv", "1 data rows", "at least two"]),
    ("price_rows_uneven", PRICE, {"p.csv": _prices(DAY[:2] + DAY[3:])}, ["p.csv", "04:00", "evenly spaced"]),
    ("price_header_wrong", PRICE, {"p.csv": "time,reg_up,regdown\n2024-06-21 01:00,1,2\n"},
     ["p.csv", "3 problems", "'time'", "regdown"]),
    ("price_time_with_utc_offset", PRICE, {"p.csv": _prices([t + "+02:00" for t in DAY])},
     ["p.csv", "+02:00", "UTC offset"]),
    ("regulation_out_of_range", REGULATION, {"r.csv": _regulation("3.0")}, ["iso.regulation_csv", "r.csv", "3.0"]),
    ("regulation_does_not_cover_the_run", REGULATION,
     {"r.csv": "interval_ending,regulation\n2024-06-21 01:00,0\n2024-06-21 02:00,0\n"},
     ["iso.regulation_csv", "r.csv", "covers", "2024-06-21 10:00"]),
    ("regulation_file_missing", ["--set", "iso.regulation_csv={tmp}/nope.csv"], {},
     ["iso.regulation_csv", "nope.csv"]),
    # ---- feeders (compiled and solved before launch) -------------------------------------------------------
    ("feeder_does_not_converge", ["--feeder", "{tmp}/collapse.dss"], {"collapse.dss": COLLAPSE},
     ["feeders.0", "collapse.dss", "does not converge", "max_iterations"]),
    ("feeder_not_opendss", ["--feeder", "{tmp}/junk.dss"], {"junk.dss": "New Bogus.thing x=1\n"},
     ["feeders.0", "junk.dss", "OpenDSS could not load"]),
    ("feeder_without_circuit", ["--feeder", "{tmp}/empty.dss"], {"empty.dss": "Clear\n"},
     ["feeders.0", "empty.dss", "new circuit"]),
    # ---- run, compare and the run folder -------------------------------------------------------------------
    ("run_out_in_proc", ["run", "{small}", "--out", "/proc/x"], {}, ["--out", "/proc/x", "cannot be written"]),
    ("run_out_under_a_file", ["run", "{small}", "--out", "{tmp}/f.txt/run"], {"f.txt": "x"},
     ["--out", "f.txt", "which is a file"]),
    ("run_out_is_a_file", ["run", "{small}", "--out", "{tmp}/f.txt"], {"f.txt": "x"}, ["--out", "f.txt", "file"]),
    ("run_out_name_too_long", ["run", "{small}", "--out", "{tmp}/" + "x" * 300], {}, ["--out", "xxxx", "255"]),
    ("run_out_path_too_long", ["run", "{small}", "--out", "{tmp}/" + "/".join(["y" * 200] * 21)], {},
     ["--out", "yyyy", "4096"]),
    ("run_hours_inf", ["run", "{small}", "--out", "{tmp}/r", "--hours", "inf"], {}, ["hours", "inf"]),
    ("run_mode_unknown", ["run", "{small}", "--out", "{tmp}/r", "--mode", "bogus"], {}, ["--mode", "bogus"]),
    ("run_price_negative", ["run", "{small}", "--out", "{tmp}/r", *PRICE], {"p.csv": _prices(value="-1,1,1")},
     ["iso.price_csv", "reg_up", "-1"]),
    ("compare_seed_negative", ["compare", "{small}", "--out", "{tmp}/c", "--seed", "-1"], {}, ["seed", "-1"]),
]


@pytest.fixture(autouse=True)
def nothing_is_launched(monkeypatch):
    """A bad input must be refused before any process starts: launching fails the test."""
    def launched(*args, **_kwargs):
        raise AssertionError(f"a process was launched for a bad input: {args[:1]}")

    monkeypatch.setattr(subprocess, "Popen", launched)
    monkeypatch.setattr(runner.cli, "execute", launched)


def _invoke(args: list[str], files: dict, tmp_path: Path):
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    subst = {"{tmp}": str(tmp_path), "{small}": str(SMALL), "{default}": str(DEFAULT)}
    argv = []
    for arg in args:
        for key, value in subst.items():
            arg = arg.replace(key, value)
        argv.append(arg)
    if argv[0] not in ("run", "compare"):
        scenario = [str(SMALL)] if argv[0].startswith("-") else []  # options only: validate small.yaml
        argv = ["validate", *scenario, *argv]
    return CliRunner().invoke(main, argv)


def test_the_table_is_big_enough():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("args, files, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_naming_field_and_value(tmp_path, args, files, needles):
    result = _invoke(args, files, tmp_path)
    out = result.output
    assert result.exit_code == 2, (result.exit_code, out, result.exception)
    assert "Traceback" not in out
    missing = [n for n in needles if n not in out]
    assert not missing, f"message lacks {missing}:\n{out}"


# ---- the pre-launch checks, directly -------------------------------------------------------------------------
def test_preflight_reports_every_file_problem_at_once(tmp_path):
    (tmp_path / "p.csv").write_text(_prices(value="8,-3,1"))
    (tmp_path / "r.csv").write_text(_regulation("3.0"))
    (tmp_path / "collapse.dss").write_text(COLLAPSE)
    sc = load_scenario(SMALL, ["iso.prices=csv", f"iso.price_csv={tmp_path}/p.csv",
                               f"iso.regulation_csv={tmp_path}/r.csv", f"feeders.1.master={tmp_path}/collapse.dss"])
    problems = preflight(sc)
    assert len(problems) == 3, problems
    assert [p.split()[0].rstrip(":") for p in problems] == ["feeders.1", "iso.price_csv", "iso.regulation_csv"]


def test_a_good_scenario_has_no_preflight_problem(tmp_path):
    (tmp_path / "p.csv").write_text(_prices())
    (tmp_path / "r.csv").write_text(_regulation("-1.0"))
    sc = load_scenario(SMALL, ["iso.prices=csv", f"iso.price_csv={tmp_path}/p.csv",
                               f"iso.regulation_csv={tmp_path}/r.csv"])
    assert preflight(sc) == []


def test_price_file_must_cover_the_last_interval_of_the_run(tmp_path):
    # the run is 10:00-11:30; hour ending 11:00 covers [10:00, 11:00), hour ending 12:00 is needed too
    (tmp_path / "p.csv").write_text(_prices(DAY[9:11]))
    sc = load_scenario(SMALL, ["iso.prices=csv", f"iso.price_csv={tmp_path}/p.csv"])
    assert any("covers [2024-06-21 09:00:00, 2024-06-21 11:00:00)" in p for p in preflight(sc))
    (tmp_path / "p.csv").write_text(_prices(DAY[9:12]))
    assert preflight(sc) == []


def test_memory_refusal_gives_the_estimate_and_a_span_that_fits():
    sc = load_scenario(SMALL, ["hours=8760"])
    need = estimate_memory_bytes(sc, 12)
    assert memory_problems(sc, 12, available=need) == []
    [problem] = memory_problems(sc, 12, available=need // 2)
    assert "8760 h with 12 prosumers" in problem and f"{need / 2**30:.1f} GiB" in problem
    most_h = float(problem.rsplit("at most ", 1)[1].split()[0])
    assert 0 < most_h < 8760
    shorter = load_scenario(SMALL, [f"hours={int(most_h * 12) / 12}"])
    assert estimate_memory_bytes(shorter, 12) <= need // 2


def test_available_memory_is_read_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24684084 kB\nMemFree: 1 kB\nMemAvailable:   22264576 kB\n")
    assert available_memory_bytes(meminfo) == 22264576 * 1024
    assert available_memory_bytes(tmp_path / "none") is None


def test_out_dir_check_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b" / "run"
    assert check_out_dir(target) == target
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="which is a file"):
        check_out_dir(tmp_path / "f" / "run")


def test_zero_pv_and_battery_ranges_mean_none():
    sc = load_scenario(SMALL, ["feeders.0.prosumers.pv_kwp=[0, 0]", "feeders.0.prosumers.pv_share=1",
                               "feeders.0.prosumers.battery_kwh=[0, 0]", "feeders.0.prosumers.ev_kwh=[0, 0]",
                               "feeders.0.prosumers.ev_share=1"])
    prosumers = make_prosumers(sc.feeders[0], ["a", "b", "c"], seed=1)
    assert all(p.pv is None and p.battery is None for p in prosumers)
    assert all(f.name != "ev" for p in prosumers for f in p.flex_loads)


def test_validate_without_a_scenario_takes_the_default():
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 0, result.output
    assert f"{DEFAULT}: valid" in result.output


def test_a_file_system_error_is_named_without_a_traceback():
    import click

    @click.command()
    @runner.cli.friendly
    def touch():
        Path("/proc/harmony-cannot-write-here").write_text("x")

    result = CliRunner().invoke(touch, [])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "/proc/harmony-cannot-write-here" in result.output
