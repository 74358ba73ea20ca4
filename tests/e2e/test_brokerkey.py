"""Who may join (issue #14): every build and run has its own broker key, and the broker refuses any federate
that does not present it, so a process that read the port from federation.json cannot join and subscribe to the
prosumers' injections and headroom. ``tests/e2e/intruder.py`` plays that process.

The first test shows the threat (without a key the intruder joins), so that the refusals below are refusals and
not a probe that cannot connect at all.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from federates.common.wiring import BROKER_KEY_FILE, read_broker_key
from runner.build import free_port, write_broker_key
from runner.cli import main
from runner.launch import end_group, helics_env

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent
REPO = HERE.parents[1]
INTRUDER = HERE / "intruder.py"
REFUSED = "broker key does not match"


def intrude(port: int, key: str | None = None, *, prefix: tuple[str, ...] = (), address: str = "127.0.0.1") -> dict:
    """Run the intruder once; its verdict ({"joined": ..., "error": ...})."""
    cmd = [*prefix, sys.executable, str(INTRUDER), "--port", str(port), "--address", address]
    done = subprocess.run(cmd + (["--key", key] if key else []), capture_output=True, text=True, timeout=150,
                          env=helics_env())
    assert done.returncode == 0 and done.stdout.strip(), done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def listening(port: int) -> bool:
    """Something listens on local TCP ``port`` (this network namespace)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def start_broker(folder: Path, port: int, *options: str) -> subprocess.Popen:
    exe = shutil.which("helics_broker", path=helics_env()["PATH"])
    assert exe, "helics_broker not found beside this interpreter"
    proc = subprocess.Popen([exe, "-f", "1", f"--port={port}", "--loglevel=warning", *options], cwd=folder,
                            env=helics_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for(lambda: listening(port), 30, f"the broker on port {port}")
    return proc


def test_without_a_key_anyone_who_knows_the_port_joins(tmp_path):
    port = free_port()
    broker = start_broker(tmp_path, port)
    try:
        assert intrude(port) == {"joined": True}
    finally:
        end_group(broker)


def test_the_broker_refuses_a_federate_without_the_key_or_with_a_wrong_one(tmp_path):
    key_file = write_broker_key(tmp_path)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    port = free_port()
    broker = start_broker(tmp_path, port, f"--config={key_file.name}")  # as `harmony build` writes it
    try:
        for key in (None, "0" * 32):
            verdict = intrude(port, key)
            assert not verdict["joined"] and REFUSED in verdict["error"], verdict
        assert intrude(port, read_broker_key(key_file)) == {"joined": True}  # the key itself is what matters
    finally:
        end_group(broker)


def test_every_build_has_its_own_key_readable_only_by_its_owner_and_never_on_a_command_line(tiny, tmp_path):
    keys = []
    for out in (tmp_path / "a", tmp_path / "b"):
        built = CliRunner().invoke(main, ["build", str(tiny), "--out", str(out)])
        assert built.exit_code == 0, built.output
        key_file = out / BROKER_KEY_FILE
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        keys.append(read_broker_key(key_file))
        assert f"--config={BROKER_KEY_FILE}" in broker_exec(out)
        assert keys[-1] not in (out / "federation.json").read_text()
        for config in (out / "federates").glob("*.json"):
            runtime = json.loads(config.read_text())["runtime"]
            assert runtime["broker_key_file"] == f"../{BROKER_KEY_FILE}", config
            assert keys[-1] not in config.read_text()
    assert keys[0] != keys[1] and len(keys[0]) == 32
    plain = tmp_path / "plain"
    built = CliRunner().invoke(main, ["build", str(tiny), "--out", str(plain), "--no-brokerkey"])
    assert built.exit_code == 0, built.output
    assert not (plain / BROKER_KEY_FILE).exists() and "--config" not in broker_exec(plain)


def broker_exec(out: Path) -> str:
    return next(f["exec"] for f in json.loads((out / "federation.json").read_text())["federates"]
                if f["name"] == "broker")


def _command_lines() -> str:
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return "\n".join(lines)


def test_a_run_cannot_be_joined_without_its_key_and_still_completes(tiny, tmp_path):
    run_dir = tmp_path / "run"
    harmony = subprocess.Popen([sys.executable, "-m", "runner.cli", "run", str(tiny), "--out", str(run_dir),
                                "--quiet", "--hours", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=REPO, start_new_session=True)
    try:
        wait_for(lambda: (run_dir / "federation.json").is_file() and (run_dir / BROKER_KEY_FILE).is_file(), 120,
                 "the run's federation.json")
        port = int((run_dir / "federation.json").read_text().split("--port=", 1)[1].split()[0])
        wait_for(lambda: listening(port) or harmony.poll() is not None, 60, "the run's broker")
        key = read_broker_key(run_dir / BROKER_KEY_FILE)
        verdicts = [intrude(port), intrude(port, "0" * 32)]
        on_command_lines = key in _command_lines()
        _, err = harmony.communicate(timeout=300)
    finally:
        end_group(harmony)
    for verdict in verdicts:
        assert not verdict["joined"] and REFUSED in verdict["error"], verdict
    assert not on_command_lines, "the broker key is visible to every local user on a process's command line"
    assert harmony.returncode == 0, err
    assert json.loads((run_dir / "kpis.json").read_text())["prosumers"] == 4
    assert stat.S_IMODE(os.stat(run_dir / BROKER_KEY_FILE).st_mode) == 0o600
