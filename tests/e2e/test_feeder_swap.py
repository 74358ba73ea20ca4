"""Swap in a utility-grade feeder by changing config only: `harmony run --feeder MASTER` on the IEEE 123-node
feeder and the IEEE European LV test case (reference copies in ../shared/data/feeders, read-only).

Each run is 30 simulated minutes from 11:30 (PV exporting) in mode layer1: feeders, prosumers and the VPPs
whose voltage guard reads the feeder state. To keep the file well under a minute, ISO and Layer III (which
never touch the feeder physics) are left out, the second feeder keeps only 4 prosumers and each feeder's
prosumers share one federate: 6 processes instead of 10.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from federates.feeder.shapes import background_multiplier
from runner.cli import main

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
START = datetime(2024, 6, 21, 11, 30)
STEP_TIMES = [0.0, 300.0, 600.0, 900.0, 1200.0, 1500.0]  # 0.5 h of 5-minute physics steps
# feeder -> (folder under shared/data/feeders, master, file holding its `New Load` lines)
FEEDERS = {
    "ieee123": ("123Bus", "IEEE123Master.dss", "IEEE123Loads.DSS"),
    "eu_lv": ("LVTestCase", "Master.dss", "Loads.txt"),
}
LOAD_LINE = re.compile(r"^\s*new\s+load\.(\S+)\s.*?\bkw=([0-9.]+)", re.IGNORECASE | re.MULTILINE)


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: relative path -> (size, mtime_ns, sha256)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns,
                                                  hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def base_loads(path: Path) -> dict[str, float]:
    """Load name (lower case) -> base kW, read straight from the OpenDSS text (no OpenDSS involved)."""
    return {m.group(1).lower(): float(m.group(2)) for m in LOAD_LINE.finditer(path.read_text())}


@pytest.fixture(scope="module", params=sorted(FEEDERS))
def swap(request, shared_data, tmp_path_factory) -> dict:
    name = request.param
    folder, master, load_file = FEEDERS[name]
    feeders_dir = shared_data / "feeders"
    before = snapshot(feeders_dir)
    run_dir = tmp_path_factory.mktemp(name) / "run"
    result = CliRunner().invoke(main, [
        "run", "--out", str(run_dir), "--hours", "0.5", "--mode", "layer1", "--quiet",
        "--set", f"start={START.isoformat()}", "--set", "feeders.1.prosumers.placement=4",
        "--set", "federation.prosumers_per_federate=20", "--feeder", str(feeders_dir / folder / master)])
    cfg = json.loads((run_dir / "federates" / "feeder_suburb.json").read_text())
    return {"name": name, "result": result, "run_dir": run_dir, "before": before,
            "after": snapshot(feeders_dir), "loads": base_loads(feeders_dir / folder / load_file),
            "prosumer_loads": cfg["prosumer_loads"], "master": cfg["feeder"]["master"]}


def table(swap: dict, name: str) -> pd.DataFrame:
    df = pd.read_csv(swap["run_dir"] / "results" / f"{name}.csv")
    df["time"] = df["time"].round(3)  # prosumers record their step at +1e-9 s
    return df


def test_run_succeeds_and_leaves_the_feeder_folder_untouched(swap):
    result = swap["result"]
    assert result.exit_code == 0, result.output
    assert "error" not in result.output.lower()
    assert swap["master"].endswith(FEEDERS[swap["name"]][1]), "the first feeder's master was replaced"
    assert swap["after"] == swap["before"], "no file in shared/data/feeders was created, changed or removed"


def test_one_converged_step_per_five_minutes(swap):
    steps = table(swap, "feeder_steps")
    mine = steps[steps.feeder == "suburb"]
    assert mine.time.tolist() == STEP_TIMES
    assert mine.converged.all(), mine.message.tolist()
    assert (steps[steps.feeder == "rural"].time.tolist()) == STEP_TIMES, "the second feeder ran alongside"


def test_prosumers_sit_on_real_residential_loads_of_the_feeder(swap):
    placed = swap["prosumer_loads"]
    loads = swap["loads"]
    assert len(placed) == 20 and len(set(placed.values())) == 20  # default placement: 20 distinct loads
    assert set(placed.values()) <= set(loads), "every prosumer is on a load named in the master's files"
    assert max(loads[n] for n in placed.values()) <= 50.0, "only residential-size loads host prosumers"
    steps, volts = table(swap, "prosumer_steps"), table(swap, "voltages")
    for df in (steps[steps.feeder == "suburb"], volts[volts.feeder == "suburb"]):
        assert set(df.prosumer) == set(placed)
        assert df.groupby("prosumer").time.apply(list).map(lambda t: t == STEP_TIMES).all()


def test_voltages_are_plausible_and_within_the_feeder_range(swap):
    volts = table(swap, "voltages")
    volts = volts[volts.feeder == "suburb"].merge(
        table(swap, "feeder_steps")[["time", "feeder", "v_min_pu", "v_max_pu"]], on=["time", "feeder"])
    assert volts.v_pu.between(0.9, 1.1).all(), volts.v_pu.describe()
    assert (volts.v_min_pu - 1e-9 <= volts.v_pu).all() and (volts.v_pu <= volts.v_max_pu + 1e-9).all()
    assert (volts.v_max_pu - volts.v_min_pu).min() > 0.005, "a real feeder has a voltage spread"


def test_the_feeder_carries_its_own_loads_and_exactly_the_prosumer_injections(swap):
    feeder = table(swap, "feeder_steps").set_index(["feeder", "time"]).loc["suburb"]
    steps = table(swap, "prosumer_steps")
    injected = steps[steps.feeder == "suburb"].groupby("time").grid_kw.sum()
    pd.testing.assert_series_equal(injected, feeder.members_p_kw, check_names=False, rtol=1e-9)
    # background = the master's non-prosumer loads x the time-of-day multiplier; a wrong feeder (e.g. the
    # repo's lv_suburb) or dropped injections would be far off. 10 %: voltage-dependent loads (IEEE 123 has
    # constant-Z/I loads; the LV case's 0.23 kV loads sit on a 0.240 kV base, constant-Z above 1.05 pu)
    hosts = set(swap["prosumer_loads"].values())
    background_kw = sum(kw for n, kw in swap["loads"].items() if n not in hosts)
    expected = pd.Series([background_multiplier(START, t) * background_kw for t in feeder.index],
                         feeder.index)
    drawn = feeder.loads_kw + feeder.members_p_kw
    assert ((drawn / expected - 1.0).abs() < 0.10).all(), (drawn / expected).tolist()
    # the substation supplies the loads, net of the prosumers' export, plus the series losses
    gap = feeder.p_head_kw - (feeder.loads_kw + feeder.losses_kw)
    assert (gap.abs() <= 1e-3 * feeder.loads_kw.abs().clip(lower=1.0)).all()


def test_a_run_script_is_refused_before_it_can_write(shared_data, tmp_path):
    folder = shared_data / "feeders" / "123Bus"
    before = snapshot(folder)
    result = CliRunner().invoke(main, ["run", "--out", str(tmp_path / "r"), "--hours", "0.5", "--quiet",
                                       "--feeder", str(folder / "Run_IEEE123Bus.DSS")])
    assert result.exit_code == 2
    assert "run script" in result.output and "Compile (IEEE123Master.dss)" in result.output
    assert snapshot(folder) == before


@pytest.mark.usefixtures("shared_data")
def test_shipped_utility_scenarios_validate():
    for scenario, placed in (("ieee123", 60), ("eu_lv", 75)):
        path = REPO / "configs" / "scenarios" / f"{scenario}.yaml"
        result = CliRunner().invoke(main, ["validate", str(path)])
        assert result.exit_code == 0, result.output
        assert f"{placed} prosumers placed" in result.output


def test_feeder_info_lists_loads_bases_and_voltage_range():
    master = REPO / "feeders" / "ieee13" / "Master.dss"
    result = CliRunner().invoke(main, ["feeder", "info", str(master)])
    assert result.exit_code == 0, result.output
    out = result.output
    loads = base_loads(master)
    assert len(loads) == 18
    for name, kw in loads.items():
        assert re.search(rf"^{re.escape(name)}\s+\S+\s+\d\s+{kw:.2f}\s+(yes|no)", out, re.MULTILINE), name
    assert "base voltages (kV L-L): [0.48, 4.16]" in out
    found = re.search(r"service voltage ([0-9.]+)-([0-9.]+) pu, head ([0-9.]+) kW .* losses ([0-9.]+) kW",
                      out)
    v_lo, v_hi, head_kw, losses_kw = map(float, found.groups())
    assert 0.9 < v_lo < v_hi < 1.1
    # IEEE 13: 3466 kW of spot and distributed load; with constant-Z/I loads the head is within 3 % of
    # the loads plus the losses (published: 3577 kW in at the source)
    assert sum(loads.values()) == pytest.approx(3466.0, abs=0.01)
    assert head_kw == pytest.approx(sum(loads.values()) + losses_kw, rel=0.03)


def test_a_feeder_with_too_few_houses_places_what_there_is_and_says_so(caplog):
    master = REPO / "feeders" / "ieee13" / "Master.dss"  # 5 of its 18 loads are residential size
    result = CliRunner().invoke(main, ["validate", str(REPO / "configs" / "scenarios" / "default.yaml"),
                                       "--feeder", str(master)])
    assert result.exit_code == 0, result.output
    assert "has 5 residential-size loads, fewer than the 20 prosumers asked for: placed 5" in caplog.text


# ---------------------------------------------------------------- IEEE 34 traps and failed power flows
DELTA = REPO / "feeders" / "test_delta_lateral" / "Master.dss"
# A 40 MW constant-power load (Vminpu=0: never an impedance) at the end of the test feeder's lateral: no
# power-flow solution at any time of day (tests/integration/test_feeder_model.py).
ABSURD_LOAD = ("New Load.absurd bus1=l3.1.2 phases=1 conn=delta model=1 kV=24.9 kW=40000 kvar=20000 "
               "vminpu=0 vlowpu=0\n")


def absurd_master(folder: Path) -> Path:
    path = folder / "Absurd.dss"
    path.write_text(DELTA.read_text().replace("Set VoltageBases", ABSURD_LOAD + "Set VoltageBases"))
    return path


def run_delta(run_dir: Path, *extra: str):
    """30 minutes from 17:30 (evening peak: the lateral below 0.95 pu) in mode layer12 (feeders, prosumers,
    VPPs and the ISO: every subscriber of the feeder state) with the delta-lateral feeder first and its
    absurd-load variant second. The pre-launch check would refuse the absurd feeder (its base case does not
    converge), so it is switched off here to test what the federation does when power flows fail."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("runner.preflight._feeder_problems", lambda _sc, _i, _feeder: ([], 10))
        return CliRunner().invoke(main, [
            "run", "--out", str(run_dir), "--hours", "0.5", "--mode", "layer12", "--seed", "1", "--quiet",
            "--set", "start=2024-06-21T17:30:00", "--set", "federation.prosumers_per_federate=20",
            "--set", "feeders.1.prosumers.placement=4", "--set", f"feeders.1.master={absurd_master(run_dir.parent)}",
            "--set", "feeders.1.vpp.community_battery=null",
            "--feeder", str(DELTA), *extra])


@pytest.fixture(scope="module")
def delta_run(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("delta") / "run"
    result = run_delta(run_dir)
    return {"result": result, "run_dir": run_dir}


def test_delta_lateral_feeder_runs_and_every_prosumer_injects_as_commanded(delta_run):
    result, run_dir = delta_run["result"], delta_run["run_dir"]
    assert result.exit_code == 0, result.output
    steps = pd.read_csv(run_dir / "results" / "feeder_steps.csv")
    mine = steps[steps.feeder == "suburb"]
    assert mine.time.tolist() == STEP_TIMES
    assert mine.converged.all() and (mine.message == "converged").all(), mine.message.tolist()
    assert (mine.v_min_pu < 0.95).all(), "the lateral falls below 0.95 pu"
    placement = pd.read_csv(run_dir / "results" / "placement.csv").fillna({"load": "", "prosumer": "", "reason": ""})
    ours = placement[placement.feeder == "suburb"]
    assert (ours.prosumer != "").sum() == 9, "all 9 residential-size loads host a prosumer"
    assert ours.reason.str.contains("fewer than the 20 prosumers asked for: placed 9").any()
    assert "0.577 of its rating" in ours.set_index("load").reason["d_l2_a"]


def test_failed_power_flows_are_flagged_and_the_run_goes_on(delta_run):
    result, run_dir = delta_run["result"], delta_run["run_dir"]
    assert result.exit_code == 0, result.output
    steps = pd.read_csv(run_dir / "results" / "feeder_steps.csv")
    absurd = steps[steps.feeder == "rural"]
    assert absurd.time.tolist() == STEP_TIMES, "the failing feeder still steps to the end"
    assert not absurd.converged.astype(bool).any()
    assert absurd.message.str.contains("did not converge after one retry").all()
    kpis = json.loads((run_dir / "kpis.json").read_text())
    assert kpis["nonconverged_steps"] == len(STEP_TIMES)
    # the ISO and the VPP read every flagged state (finite, converged False) and lived to the end
    exchange = pd.read_csv(run_dir / "results" / "exchange.csv")
    reads = exchange[(exchange.key == "feeder_rural/state") & (exchange.action == "read")]
    assert reads.groupby("federate").target.apply(list).to_dict() == {f: list(range(6)) for f in ("iso", "vpp_rural")}
    corrective = pd.read_csv(run_dir / "results" / "corrective.csv")
    assert (corrective.feeder != "rural").all(), "the voltage guard ignores a failed power flow"


def test_on_nonconvergence_stop_names_the_feeder(tmp_path):
    result = run_delta(tmp_path / "run", "--set", "feeders.1.on_nonconvergence=stop")
    assert result.exit_code == 1
    causes = result.output.split("results so far are in", 1)[-1].splitlines()[1:]
    first = next(line.strip() for line in causes if line.strip())
    assert first.startswith("feeder_rural:") and "did not converge" in first, result.output
