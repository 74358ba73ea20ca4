"""Runs never lie (issue #11): a run that did not finish exits 1 naming who stopped; no process or port of a run
outlives it; ``--out`` never deletes what the project did not write; concurrent runs never share ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from federates.common.config import load_scenario
from federates.common.errors import HarmonyError
from runner import build as build_mod
from runner.build import PORT_BLOCK, reserve_ports
from runner.cli import execute, main
from runner.launch import RUN_MARKER, claim_out_dir

REPO = Path(__file__).resolve().parents[2]
SMALL = Path(__file__).with_name("small.yaml")


def start_run(scenario: Path, run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner.cli", "run", str(scenario), "--out", str(run_dir),
                             "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def processes_of(run_dir: Path) -> dict[int, str]:
    """Every live process working in ``run_dir`` (helics run, broker binary, federates) or naming it."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if int(proc.name) != os.getpid() and state != "Z" and (cwd.startswith(str(run_dir)) or str(run_dir) in cmdline):
            found[int(proc.name)] = f"{cmdline} (cwd {cwd})"
    return found


def listening_ports(first: int, last: int) -> list[int]:
    """Local TCP ports in ``first..last`` in state LISTEN (``ss -ltn`` without ss)."""
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            port = int(local.rsplit(":", 1)[1], 16)
            if state == "0A" and first <= port <= last:
                ports.append(port)
    return ports


def broker_port(run_dir: Path) -> int:
    text = (run_dir / "federation.json").read_text()
    return int(text.split("--port=", 1)[1].split()[0])


def pid_of(run_dir: Path, federate: str) -> int | None:
    for pid, cmdline in processes_of(run_dir).items():
        if f"federates/{federate}.json" in cmdline and "-m federates." in cmdline:
            return pid
    return None


def assert_nothing_left(run_dir: Path) -> None:
    """No process of the run is alive and nothing listens on its ports (checked at once: `harmony run` waits
    for its process group to be gone before it returns)."""
    assert processes_of(run_dir) == {}
    base = broker_port(run_dir)
    assert listening_ports(base, base + PORT_BLOCK - 1) == []


# --- a federate killed from outside ---------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_federate_killed_with_sigkill_fails_the_run_naming_it_and_nothing_is_left(tiny, tmp_path):
    run_dir = tmp_path / "killed"
    harmony = start_run(tiny, run_dir, "--hours", "24", "--mode", "full")  # a day: the kill lands mid-run
    try:
        # mid-run: the feeder has flushed its first simulated half hour
        wait_for(lambda: (run_dir / "parts" / "feeder_suburb" / "feeder_steps.csv").is_file(), 150,
                 "the first half hour")
        pid = pid_of(run_dir, "prosumers_suburb_0")
        assert pid is not None, processes_of(run_dir)
        os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer does
        _, err = harmony.communicate(timeout=120)
    finally:
        if harmony.poll() is None:
            harmony.kill()
    assert harmony.returncode == 1, err
    assert "did not finish" in err and "prosumers_suburb_0" in err
    named = [ln for ln in err.splitlines() if ln.strip().startswith("prosumers_suburb_0:")]
    assert named and "of 24:00 simulated" in named[0], err
    assert not (run_dir / "kpis.json").exists()
    assert_nothing_left(run_dir)
    # `harmony collect` on the same folder reaches the same verdict from the recorded parts alone
    collected = CliRunner().invoke(main, ["collect", str(run_dir), "--scenario", str(tiny)])
    assert collected.exit_code == 1 and "prosumers_suburb_0" in collected.output, collected.output
    assert not (run_dir / "kpis.json").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 1)],
                         ids=["SIGTERM", "Ctrl-C"])
def test_stopping_harmony_ends_the_whole_federation(tiny, tmp_path, signum, status):
    run_dir = tmp_path / "terminated"
    harmony = start_run(tiny, run_dir, "--hours", "24", "--mode", "full")
    try:
        wait_for(lambda: (run_dir / "parts" / "feeder_suburb" / "feeder_steps.csv").is_file(), 150,
                 "the first half hour")
        harmony.send_signal(signum)
        harmony.communicate(timeout=60)
    finally:
        if harmony.poll() is None:
            harmony.kill()
    assert harmony.returncode == status
    assert_nothing_left(run_dir)


@pytest.mark.e2e
def test_harmony_killed_outright_still_takes_its_federation_with_it(tiny, tmp_path):
    """SIGKILL cannot be caught: the watcher (runner.reaper) ends the group when harmony's pipe closes."""
    run_dir = tmp_path / "orphaned"
    harmony = start_run(tiny, run_dir, "--hours", "24", "--mode", "full")
    try:
        wait_for(lambda: (run_dir / "parts" / "feeder_suburb" / "feeder_steps.csv").is_file(), 150,
                 "the first half hour")
        assert pid_of(run_dir, "prosumers_suburb_0") is not None, processes_of(run_dir)
        harmony.kill()
        harmony.communicate(timeout=30)
        # within seconds, long before the day could end by itself (it takes this federation 20 s or more)
        wait_for(lambda: processes_of(run_dir) == {}, 5, "the federation to end")
    finally:
        if harmony.poll() is None:
            harmony.kill()
    base = broker_port(run_dir)
    wait_for(lambda: listening_ports(base, base + PORT_BLOCK - 1) == [], 10, "the run's ports to close")
    assert not (run_dir / "kpis.json").exists()


# --- ports --------------------------------------------------------------------------------------------------------


def test_port_blocks_reserved_at_once_never_overlap():
    blocks = [reserve_ports(n) for n in (0, 3, 10, 30, 0, 0, 50, 0)]
    try:
        spans = sorted((b.base, b.base + b.size) for b in blocks)
        assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False))
        assert all(b.size >= 2 * n + 16 for b, n in zip(blocks, (0, 3, 10, 30, 0, 0, 50, 0), strict=True))
    finally:
        for b in blocks:
            b.release()


def test_a_reserved_block_is_never_handed_out_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "PORT_LOCKS", tmp_path)  # a private lock folder: two blocks, both free
    monkeypatch.setattr(build_mod, "PORT_RANGE", (20000, 20000 + 2 * PORT_BLOCK))
    monkeypatch.setattr(build_mod, "_bindable", lambda _port: True)
    first, second = reserve_ports(), reserve_ports()
    assert {first.base, second.base} == {20000, 20000 + PORT_BLOCK}
    with pytest.raises(HarmonyError, match="no free block"):
        reserve_ports()
    first.release()
    assert reserve_ports().base == first.base


@pytest.mark.e2e
def test_four_runs_started_at_the_same_instant_all_succeed(tiny, tmp_path):
    runs = [start_run(tiny, tmp_path / f"r{i}") for i in range(4)]
    results = [p.communicate(timeout=300) for p in runs]
    for i, (p, (_, err)) in enumerate(zip(runs, results, strict=True)):
        assert p.returncode == 0, f"run {i}: {err}"
        assert (tmp_path / f"r{i}" / "kpis.json").is_file()
    assert len({broker_port(tmp_path / f"r{i}") for i in range(4)}) == 4


@pytest.mark.e2e
def test_a_port_taken_by_another_program_is_retried_on_other_ports(tiny, tmp_path, monkeypatch):
    taken, bases, real = [], [], reserve_ports

    def first_block_taken(n_federates: int = 0):
        block = real(n_federates)
        bases.append(block.base)
        if len(bases) == 1:  # another program grabs the ports the broker would hand to the federates' cores
            for port in range(block.base + 2, block.base + block.size):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                s.listen()
                taken.append(s)
        return block

    monkeypatch.setattr(build_mod, "reserve_ports", first_block_taken)
    try:
        figures = execute(load_scenario(tiny), tmp_path / "run", show_progress=False)
    finally:
        for s in taken:
            s.close()
    assert len(bases) == 2 and figures["prosumers"] == 4


# --- the run folder ---------------------------------------------------------------------------------------------


def fake_previous_run(run_dir: Path) -> None:
    (run_dir / "results").mkdir(parents=True)
    (run_dir / "results" / "trades.csv").write_text("x\n")
    (run_dir / "federation.json").write_text('{"name": "x", "federates": [{"name": "broker"}, {"name": "iso"}]}')
    (run_dir / "iso.log").write_text("log\n")
    (run_dir / "kpis.json").write_text("{}\n")
    (run_dir / RUN_MARKER).write_text("run\n")


def test_out_refuses_a_folder_the_project_did_not_write_and_deletes_nothing(tmp_path):
    scenario_dir = tmp_path / "mine"
    scenario_dir.mkdir()
    scenario = scenario_dir / "small.yaml"
    scenario.write_text(SMALL.read_text().replace("../../feeders", str(REPO / "feeders")))
    result = CliRunner().invoke(main, ["run", str(scenario), "--out", str(scenario_dir), "--force"])
    assert result.exit_code == 2
    assert str(scenario_dir) in result.output and "new or empty folder" in result.output
    assert scenario.is_file() and sorted(p.name for p in scenario_dir.iterdir()) == ["small.yaml"]
    compared = CliRunner().invoke(main, ["compare", str(scenario), "--out", str(scenario_dir)])
    assert compared.exit_code == 2 and scenario.is_file()


def test_a_previous_run_is_replaced_only_with_force_and_only_its_own_files(tmp_path):
    run_dir = tmp_path / "run"
    fake_previous_run(run_dir)
    (run_dir / "notes.txt").write_text("mine\n")
    result = CliRunner().invoke(main, ["run", str(SMALL), "--out", str(run_dir)])
    assert result.exit_code == 2 and "--force" in result.output and str(run_dir) in result.output
    assert (run_dir / "kpis.json").is_file()
    claim_out_dir(run_dir, "run", force=True)
    assert sorted(p.name for p in run_dir.iterdir()) == [RUN_MARKER, "notes.txt"]
    # a compare folder is not a run folder, even with --force
    with pytest.raises(ValueError, match="holds a harmony run, not a compare"):
        claim_out_dir(run_dir, "compare", force=True)


def test_new_and_empty_folders_are_used_and_marked(tmp_path):
    claim_out_dir(tmp_path / "new" / "deep", "run", force=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_out_dir(empty, "compare", force=False)
    assert (tmp_path / "new" / "deep" / RUN_MARKER).read_text() == "run\n"
    assert (empty / RUN_MARKER).read_text() == "compare\n"
