"""Launch a built federation with the HELICS runner, show progress, and report a failed federate."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click


def helics_env() -> dict[str, str]:
    """The environment for ``helics run``: this interpreter's bin folder first, so ``python`` and
    ``helics_broker`` resolve to the ones that have this project installed."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _helics_command() -> list[str]:
    exe = Path(sys.executable).parent / "helics"
    return [str(exe)] if exe.exists() else [shutil.which("helics") or "helics"]


def run_federation(federation_json: Path, run_dir: Path, duration_s: int, *, show_progress: bool = True,
                   timeout_s: float | None = None) -> int:
    """Run ``helics run --path federation_json`` and wait; returns its exit status."""
    cmd = _helics_command() + ["run", "--path", str(federation_json), "--silent"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=helics_env(), cwd=federation_json.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        while proc.poll() is None:
            time.sleep(1.0)
            if show_progress and sys.stderr.isatty():
                done = min(_feeder_rows(run_dir) * 300.0, duration_s)
                click.echo(f"\r  simulated {_hhmm(done)} / {_hhmm(duration_s)}   "
                           f"wall {time.monotonic() - started:5.0f} s", nl=False, err=True)
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                proc.kill()
                click.echo(f"\nfederation exceeded the time limit of {timeout_s:.0f} s and was stopped", err=True)
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0] or ""
    if show_progress and sys.stderr.isatty():
        click.echo("", err=True)
    if proc.returncode != 0:
        (run_dir / "helics_run.log").write_text(output)
    return proc.returncode


def _feeder_rows(run_dir: Path) -> int:
    counts = []
    for part in (run_dir / "parts").glob("feeder_*/feeder_steps.csv"):
        with part.open() as fh:
            counts.append(sum(1 for _ in fh) - 1)
    return min(counts) if counts else 0


def _hhmm(seconds: float) -> str:
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}"


def failure_report(log_dir: Path) -> list[str]:
    """'name: cause' for each federate whose log says FAILED, the root cause first.

    When one federate fails it raises a global HELICS error; the others then fail with that relayed error
    (a HelicsException naming the first federate), so those are listed after the federate that failed first.
    """
    primary, relayed = [], []
    for log in sorted(log_dir.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        failed = [ln for ln in lines if "FAILED:" in ln]
        if failed:
            cause = re.sub(r"^.*FAILED: ", "", failed[-1])
            (relayed if cause.startswith("HelicsException") else primary).append(f"{log.stem}: {cause}")
    return primary + [f"(then) {r}" for r in relayed]
