"""Many machines (issue #14): one federation over three Linux network namespaces on this machine, built with
``harmony build --hosts`` and started with one ``helics run --path DIR/<host>/federation.json`` per host, gives
the same results as a single-host run with the same seed.

The namespaces stand in for machines: ``hub`` runs the broker, the VPPs, the ISO and the inter-VPP market;
``feeders`` the OpenDSS feeders; ``prosumers`` the prosumer federates. They are joined by a bridge inside
``hub`` and one veth pair per other namespace, in the private subnet 10.231.7.0/24, which exists only inside
them (nothing is added to this machine's own network namespace; the namespaces have no route out). The broker
listens only on 10.231.7.1, so the run can only complete if every federate reached it across the bridge. All
three share this machine's filesystem, so every federate writes its parts into the one build folder (on real
hosts they are copied together before ``harmony collect``, see docs/hosts.md).

Needs root and ``ip`` (iproute2): skipped without them, failed in CI (``CI`` set), which has both. The namespaces
(``harmony-<pid>-<host>``) and every process in them are removed on the way out, and namespaces left by a
test process that no longer exists are removed first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from federates.common.config import load_scenario
from runner.cli import execute, main
from runner.launch import _helics_command, end_group, helics_env

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent
SMALL = HERE / "small.yaml"
INTRUDER = HERE / "intruder.py"
HOURS = 0.5
SUBNET = "10.231.7"
ADDRESS = {"hub": f"{SUBNET}.1", "feeders": f"{SUBNET}.2", "prosumers": f"{SUBNET}.3"}
PORT = 23404  # the namespaces are new: nothing else listens in them
TIMEOUT_S = 300
HOSTS_YAML = f"""# broker in hub; feeders and prosumers each on their own host
broker: {{host: hub, port: {PORT}}}
hosts:
  hub:
    address: {ADDRESS["hub"]}
    federates: [vpp_*, iso, vpp_market]
  feeders:
    address: {ADDRESS["feeders"]}
    federates: [feeder_*]
  prosumers:
    address: {ADDRESS["prosumers"]}
    federates: [prosumers_*]
"""
NS_PATTERN = re.compile(r"^harmony-(\d+)-\w+$")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI runs as root with iproute2, so the multi-host test must run there")
    pytest.skip(reason)


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def remove_namespace(ns: str) -> None:
    """Kill every process inside ``ns`` (all started by this test) and delete it, with its veth ends."""
    with contextlib.suppress(RuntimeError):
        for pid in ip("netns", "pids", ns).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(RuntimeError):
        ip("netns", "del", ns)


def remove_stale_namespaces() -> None:
    """Namespaces of an earlier test process that was killed before it could remove them."""
    with contextlib.suppress(RuntimeError):
        for line in ip("netns", "list").splitlines():
            name = line.split()[0] if line.split() else ""
            match = NS_PATTERN.match(name)
            if match and not Path(f"/proc/{match[1]}").exists():
                remove_namespace(name)


def create_namespaces(ns: dict[str, str]) -> None:
    """A bridge in the hub namespace, and a veth pair from each other namespace into it."""
    for name in ns.values():
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
    hub = ns["hub"]
    ip("-n", hub, "link", "add", "br0", "type", "bridge")
    ip("-n", hub, "addr", "add", f"{ADDRESS['hub']}/24", "dev", "br0")
    ip("-n", hub, "link", "set", "br0", "up")
    for host in ("feeders", "prosumers"):
        ip("link", "add", "eth0", "netns", ns[host], "type", "veth", "peer", "name", f"to-{host}", "netns", hub)
        ip("-n", hub, "link", "set", f"to-{host}", "master", "br0", "up")
        ip("-n", ns[host], "addr", "add", f"{ADDRESS[host]}/24", "dev", "eth0")
        ip("-n", ns[host], "link", "set", "eth0", "up")


@pytest.fixture
def namespaces():
    """host -> network namespace name; created for the test and removed on every way out."""
    if os.geteuid() != 0:
        _unavailable("not root: network namespaces need root")
    if shutil.which("ip") is None:
        _unavailable("`ip` not found: install iproute2")
    remove_stale_namespaces()
    ns = {host: f"harmony-{os.getpid()}-{host}" for host in ADDRESS}
    try:
        try:
            create_namespaces(ns)
        except RuntimeError as exc:
            _unavailable(f"cannot create network namespaces here: {exc}")
        yield ns
    finally:
        for name in ns.values():
            remove_namespace(name)


def listening_in(ns: str, port: int) -> bool:
    done = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/tcp"], capture_output=True, text=True)
    return any(f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port
               for f in (line.split() for line in done.stdout.splitlines()[1:]))


def run_hosts(out: Path, ns: dict[str, str]) -> tuple[dict[str, int | None], dict]:
    """``helics run`` on each host's federation.json inside its namespace, the broker's host first, and an
    intruder once the broker listens: (exit code per host, the intruder's verdict)."""
    procs, verdict = {}, {}
    try:
        for host in ns:  # hub first: it starts the broker
            with (out / host / "helics_run.log").open("w") as log:
                procs[host] = subprocess.Popen(
                    ["ip", "netns", "exec", ns[host], *_helics_command(), "run", "--path",
                     str(out / host / "federation.json"), "--silent"],
                    cwd=out / host, env=helics_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            if host == "hub":
                deadline = time.monotonic() + 60
                while not listening_in(ns["hub"], PORT) and time.monotonic() < deadline:
                    time.sleep(0.1)
        verdict = intrude_from(ns["prosumers"])
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs.values()):
                break  # a host failed: the others would wait for its federates until the deadline
            time.sleep(0.2)
    finally:
        for proc in procs.values():
            end_group(proc)
    return {host: p.returncode for host, p in procs.items()}, verdict


def intrude_from(ns: str) -> dict:
    """A federate without the key, on the prosumers' host, is refused by the broker (and told so: it listens on
    its host's address, so the broker's answer reaches it)."""
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(INTRUDER), "--address", ADDRESS["hub"],
                           "--interface", ADDRESS["prosumers"], "--port", str(PORT)],
                          capture_output=True, text=True, timeout=150, env=helics_env())
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {"stderr": done.stderr}


def tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Every results table but the wall-clock one, rows in a canonical order."""
    out = {}
    for path in sorted((run_dir / "results").glob("*.csv")):
        if path.stem != "federate_stats":
            frame = pd.read_csv(path)
            out[path.stem] = frame.sort_values(list(frame.columns)).reset_index(drop=True) if len(frame) else frame
    return out


def test_three_namespaces_give_the_same_results_as_one_host(namespaces, tmp_path):
    hosts_yaml = tmp_path / "hosts.yaml"
    hosts_yaml.write_text(HOSTS_YAML)
    out = tmp_path / "multi"
    built = CliRunner().invoke(main, ["build", str(SMALL), "--out", str(out), "--hours", str(HOURS),
                                      "--hosts", str(hosts_yaml)])
    assert built.exit_code == 0, built.output
    runners = {h: json.loads((out / h / "federation.json").read_text()) for h in namespaces}
    names = {h: {f["name"] for f in r["federates"]} for h, r in runners.items()}
    assert names["feeders"] == {"feeder_suburb", "feeder_rural"}
    assert names["prosumers"] == {f"prosumers_{f}_{i}" for f in ("suburb", "rural") for i in (0, 1)}
    assert names["hub"] == {"broker", "vpp_suburb", "vpp_rural", "iso", "vpp_market"}
    assert not (out / "federation.json").exists()

    codes, verdict = run_hosts(out, namespaces)
    logs = {h: (out / h / "helics_run.log").read_text()[-1500:] for h in namespaces}
    assert verdict.get("joined") is False and "broker key does not match" in verdict["error"], verdict
    assert all(code == 0 for code in codes.values()), (codes, logs)
    collected = CliRunner().invoke(main, ["collect", str(out), "--scenario", str(SMALL)])
    assert collected.exit_code == 0, collected.output

    single = execute(load_scenario(SMALL, [f"hours={HOURS}"]), tmp_path / "single", show_progress=False)
    multi_tables, single_tables = tables(out), tables(tmp_path / "single")
    assert multi_tables.keys() == single_tables.keys()
    for name, frame in single_tables.items():
        pd.testing.assert_frame_equal(multi_tables[name], frame, check_exact=True, obj=name)
    multi = json.loads((out / "kpis.json").read_text())
    assert {k: v for k, v in multi.items() if k != "wall_s"} == {k: v for k, v in single.items() if k != "wall_s"}
    assert multi["prosumers"] == 12
    # values crossed every pair of hosts: prosumers -> feeders, feeders -> hub, hub -> prosumers
    reads = multi_tables["exchange"].query("action == 'read'")
    crossed = {(f.split("_")[0], k.split("_")[0]) for f, k in zip(reads.federate, reads.key, strict=True)}
    assert {("feeder", "prosumers"), ("vpp", "feeder"), ("prosumers", "vpp")} <= crossed, crossed
