"""The HELICS apps shipped with the ``helics`` PyPI package, on a real federation (docs/helics_keys.md,
"Recording and replaying with the HELICS apps").

1. ``helics_recorder``, added to a built federation.json as one more federate, captures the ISO's keys
   (``iso/awards``, ``iso/dispatch``) of a running federation: every value the ISO published, at the time it
   published it, byte for byte.
2. ``helics_player`` replays that recording into a run built with ``--external iso``, in place of the ISO:
   the VPPs and prosumers do exactly what they did with the real ISO (same reserve, same setpoints, same
   dispatch), and ``harmony collect`` accepts the run.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from federates.common.messages import Awards, DispatchSignal
from runner.build import free_port
from runner.cli import main
from runner.launch import _helics_command, end_group, helics_env

pytestmark = pytest.mark.e2e
SMALL = Path(__file__).with_name("small.yaml")
HOURS = 1.0  # the first awards act on members in slot q = 2 (from 1800 s): planned at 2 s, offered at 903 s
DURATION_S = int(HOURS * 3600)
ISO_KEYS = ("iso/awards", "iso/dispatch")
TIMEOUT_S = 240


def _build(out: Path, *extra: str) -> int:
    port = free_port()
    built = CliRunner().invoke(main, ["build", str(SMALL), "--out", str(out), "--hours", str(HOURS),
                                      "--port", str(port), *extra])
    assert built.exit_code == 0, built.output
    return port


def _add_app(out: Path, name: str, app: str, port: int, *args: str) -> None:
    """One more entry in out/federation.json running a HELICS app on our broker. The broker's -f grows by one,
    unless the app takes the place of a federate built --external (which the broker already counts)."""
    path = out / "federation.json"
    fed = json.loads(path.read_text())
    broker = next(f for f in fed["federates"] if f["name"] == "broker")
    if name not in fed.get("external", []):
        broker["exec"] = re.sub(r"-f (\d+)", lambda m: f"-f {int(m[1]) + 1}", broker["exec"])
    core = f'--federates=1 --broker_address=tcp://127.0.0.1:{port}'
    key = " --config=broker_key.json" if (out / "broker_key.json").is_file() else ""  # the run's broker key
    fed["federates"].append({"name": name, "directory": ".", "host": "localhost",
                             "exec": f'{app} {" ".join(args)}{key} --name {name} --coretype zmq '
                                     f'--coreinitstring "{core}" --stop {DURATION_S}s'})
    path.write_text(json.dumps(fed, indent=2) + "\n")


def _run(out: Path) -> None:
    """helics run --path out/federation.json, then harmony collect (exit 0 required)."""
    with (out / "helics_run.log").open("w") as log:
        proc = subprocess.Popen(_helics_command() + ["run", "--path", str(out / "federation.json"), "--silent"],
                                cwd=out, env=helics_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + TIMEOUT_S
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            end_group(proc)
    collected = CliRunner().invoke(main, ["collect", str(out), "--scenario", str(SMALL)])
    assert collected.exit_code == 0, f"{collected.output}\n{(out / 'helics_run.log').read_text()[-3000:]}"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A run of small.yaml with a helics_recorder capturing the ISO's keys into recorded.json."""
    out = tmp_path_factory.mktemp("apps") / "recorded"
    port = _build(out)
    (out / "recorder.json").write_text(json.dumps({"subscriptions": [{"key": k, "type": "string"}
                                                                    for k in ISO_KEYS]}))
    _add_app(out, "recorder", "helics_recorder", port, "recorder.json", "--output", "recorded.json")
    _run(out)
    return out


@pytest.fixture(scope="module")
def replayed(recorded, tmp_path_factory) -> Path:
    """The same scenario built with --external iso, and a helics_player named iso replaying the recording."""
    out = tmp_path_factory.mktemp("apps") / "replayed"
    port = _build(out, "--external", "iso")
    _add_app(out, "iso", "helics_player", port, str(recorded / "recorded.json"))
    _run(out)
    return out


def test_the_recorder_captures_every_value_the_iso_published_when_it_published_it(recorded):
    points = json.loads((recorded / "recorded.json").read_text())["points"]
    exchange = pd.read_csv(recorded / "results" / "exchange.csv")
    published = exchange[(exchange.federate == "iso") & (exchange.action == "publish")]
    assert len(published) > 0
    # HELICS grants t = 0 as its epsilon (1e-9 s): the ISO's first signal is recorded there
    assert (sorted((p["key"], round(p["time"], 6)) for p in points)
            == sorted(zip(published.key, published.time, strict=True)))
    parsed = [(Awards if p["key"] == "iso/awards" else DispatchSignal).loads(p["value"]) for p in points]
    assert all(msg.time_s == round(p["time"], 6) for msg, p in zip(parsed, points, strict=True))
    assert {p["key"] for p in points} == set(ISO_KEYS)


def test_the_player_replays_the_recording_in_place_of_the_iso(recorded, replayed):
    fed = json.loads((replayed / "federation.json").read_text())
    assert fed["external"] == ["iso"] and not (replayed / "federates" / "iso.json").exists()
    keys = ["time", "prosumer"]
    cols = ["delta_p_kw", "reserve_up_kw", "reserve_down_kw", "grid_kw", "soc_kwh"]
    before = pd.read_csv(recorded / "results" / "prosumer_steps.csv").sort_values(keys).reset_index(drop=True)
    after = pd.read_csv(replayed / "results" / "prosumer_steps.csv").sort_values(keys).reset_index(drop=True)
    assert (before.delta_p_kw.abs() > 1e-6).any() or (before.reserve_up_kw > 1e-6).any(), \
        "the recorded run must have had awards or a signal acting on members, or the replay proves nothing"
    pd.testing.assert_frame_equal(before[keys + cols], after[keys + cols])
    ex = pd.read_csv(replayed / "results" / "exchange.csv")
    reads = ex[(ex.action == "read") & ex.key.isin(ISO_KEYS)]
    assert set(reads.federate) == {"vpp_suburb", "vpp_rural"}
