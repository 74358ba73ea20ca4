"""Issue #16: an outside simulator takes the place of one of our federates.

``harmony build --external feeder_suburb`` leaves the suburb feeder out of federation.json; ``helics run`` starts
the rest and ``tests/e2e/standin_feeder.py`` (a separate process, no project import, written from
docs/helics_keys.md and the external JSON) joins as the feeder. It reports 1.08 pu for every exporting member.
The run must complete (``harmony collect`` exit 0), and the suburb VPP must cap exactly those members' exports,
which they must obey in the next interval.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from runner.build import free_port
from runner.cli import main
from runner.launch import _helics_command, end_group, helics_env

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent
SMALL = HERE / "small.yaml"
STANDIN = HERE / "standin_feeder.py"
NAME = "feeder_suburb"
HOURS = 0.5
TIMEOUT_S = 240


def _wait(procs: list[subprocess.Popen], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(scope="module")
def external_run(tmp_path_factory) -> tuple[Path, list[dict], int]:
    out = tmp_path_factory.mktemp("external") / "run"
    built = CliRunner().invoke(main, ["build", str(SMALL), "--out", str(out), "--hours", str(HOURS),
                                      "--port", str(free_port()), "--external", NAME])
    assert built.exit_code == 0, built.output
    log = out / "standin.jsonl"
    with (out / "standin.log").open("w") as standin_out, (out / "helics_run.log").open("w") as run_out:
        procs = [subprocess.Popen(_helics_command() + ["run", "--path", str(out / "federation.json"), "--silent"],
                                  cwd=out, env=helics_env(), stdout=run_out, stderr=subprocess.STDOUT,
                                  start_new_session=True),
                 subprocess.Popen([sys.executable, str(STANDIN), str(out / "external" / f"{NAME}.json"),
                                   "--log", str(log)], cwd=out, stdout=standin_out, stderr=subprocess.STDOUT,
                                  start_new_session=True)]
        try:
            _wait(procs, TIMEOUT_S)
        finally:
            for p in procs:
                end_group(p)
    assert procs[1].returncode == 0, (out / "standin.log").read_text()[-2000:]
    collected = CliRunner().invoke(main, ["collect", str(out), "--scenario", str(SMALL)])
    lines = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
    return out, lines, collected.exit_code


def test_federation_json_leaves_the_external_federate_out_but_the_broker_waits_for_it(external_run):
    out, _, _ = external_run
    fed = json.loads((out / "federation.json").read_text())
    names = [f["name"] for f in fed["federates"] if f["name"] != "broker"]
    broker = next(f for f in fed["federates"] if f["name"] == "broker")
    assert NAME not in names and fed["external"] == [NAME]
    assert f"-f {len(names) + 1} " in broker["exec"]
    assert not (out / "federates" / f"{NAME}.json").exists()
    spec = json.loads((out / "external" / f"{NAME}.json").read_text())
    assert spec["broker"]["federates"] == len(names) + 1 and str(spec["broker"]["port"]) in broker["exec"]
    assert spec["timing"]["request_times_s"] == [300 * n + 1 for n in range(int(HOURS * 12))]
    assert [p["key"] for p in spec["publications"]] == [f"{NAME}/state"]
    assert spec["publications"][0]["schema"]["title"] == "FeederStateMsg"
    assert {s["key"] for s in spec["subscriptions"]} == {"prosumers_suburb_0/injections",
                                                         "prosumers_suburb_1/injections"}


def test_the_run_with_the_standin_completes_and_collects(external_run):
    out, lines, code = external_run
    assert code == 0, f"harmony collect failed; see {out}"
    assert (out / "kpis.json").is_file()
    # the stand-in was granted every time and read every prosumer federate's injections of that interval
    assert [ln["t"] for ln in lines] == [300 * n + 1 for n in range(int(HOURS * 12))]
    for ln in lines:
        assert ln["read"] == {"prosumers_suburb_0/injections": ln["t"] // 300,
                              "prosumers_suburb_1/injections": ln["t"] // 300}
    feeders = pd.read_csv(out / "results" / "feeder_steps.csv")
    assert set(feeders.feeder) == {"rural"}, "only our feeder writes feeder_steps"


def test_the_vpp_caps_exactly_the_members_the_standin_reports_high_and_they_obey(external_run):
    out, lines, _ = external_run
    corrective = pd.read_csv(out / "results" / "corrective.csv")
    caps = corrective[(corrective.feeder == "suburb") & (corrective.kind == "cap_export")]
    reported = {(ln["t"] - 1, p) for ln in lines for p, v in ln["state"]["v_pu"].items() if v == 1.08}
    assert reported, "the stand-in must have reported some member high (exporting at 10:00 in June)"
    assert set(zip(caps.time, caps.prosumer, strict=True)) == reported
    assert (caps.value == 1.08).all()
    steps = pd.read_csv(out / "results" / "prosumer_steps.csv")
    obeyed = 0
    for _, cap in caps.iterrows():
        nxt = steps[(steps.prosumer == cap.prosumer) & (steps.time.round() == cap.time + 300)]
        if len(nxt):
            assert nxt.grid_kw.iloc[0] <= cap.max_export_kw + 1e-6
            obeyed += 1
    assert obeyed > 0
