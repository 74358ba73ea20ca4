"""Launch a built federation with the HELICS runner, own its processes, and decide whether the run finished.

Three guarantees (issue #11, "runs never lie"):

- **Success is decided here, not by ``helics run``'s exit status** (it counts a federate killed by a signal as a
  success): a run is complete only when every federate wrote its ``federate_stats`` row with the number of
  steps its schedule has, and the feeder and prosumer tables reach the last 5-minute tick of the span
  (:func:`unfinished`).
- **No process outlives the run**: ``helics run``, the broker (including the real ``helics_broker`` binary that
  the Python wrapper starts) and every federate run in one session and process group, which is killed on every
  way out of :func:`run_federation`: normal end, failure, Ctrl-C and SIGTERM/SIGHUP of ``harmony`` itself, and
  by the watcher :mod:`runner.reaper` when ``harmony`` is killed outright (SIGKILL, out of memory).
- **A run folder holds only what a run wrote** (:func:`claim_out_dir`): a folder is used when it is new,
  empty, or a previous run of the same kind (marked by ``.harmony-run``) and ``--force`` is given; replacing
  deletes only the files and folders a run writes.
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from federates.common.errors import ConfigError, HarmonyError
from federates.common.timebase import phases_of
from runner import reaper as reaper_mod

RUN_MARKER = ".harmony-run"
# what a run writes into its folder (plus one <federate>.log per federate of its federation.json)
RUN_OUTPUTS = ("federation.json", "federates", "parts", "results", "kpis.json", "report.html", "figures",
               "helics_run.log", "broker.log", "broker_key.json")
COMPARE_OUTPUTS = ("comparison.csv", "prosumer_costs.csv")
BIND_FAILURE = re.compile(r"unable to bind|address already in use|address in use", re.IGNORECASE)
POLL_S = 0.2
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ [A-Z]+ [\w.]+: ")  # run_main's "time LEVEL logger: "


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


# ---------------------------------------------------------------------------------------------------------------
# the run folder


def claim_out_dir(path: Path, kind: str, *, force: bool) -> None:
    """Make ``path`` ready for a new ``kind`` ("run" or "compare") and mark it as ours.

    A new or empty folder is used as it is. A previous ``kind`` of this project (its ``.harmony-run`` marker
    says so) is replaced only with ``force``, and then only the files and folders such a run writes are
    deleted (a compare's runs, one folder per mode, are each replaced by their own run). Anything else raises
    :class:`ConfigError` (exit status 2) naming the folder and the fix.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: is a file, not a folder; choose a folder")
    marker = path / RUN_MARKER
    if path.is_dir() and any(path.iterdir()):
        if not marker.is_file():
            raise ConfigError(f"--out {path}: the folder is not empty and is not a harmony {kind} (no {RUN_MARKER} "
                              f"marker); nothing was deleted. Choose a new or empty folder")
        found = marker.read_text().strip() or "run"
        if found != kind:
            raise ConfigError(f"--out {path}: holds a harmony {found}, not a {kind}; choose another folder")
        if not force:
            raise ConfigError(f"--out {path}: holds a previous harmony {kind}; pass --force to replace it "
                              f"(only the files a {kind} writes are deleted), or choose another --out")
        _clear_outputs(path, kind)
    path.mkdir(parents=True, exist_ok=True)
    marker.write_text(kind + "\n")


def _clear_outputs(path: Path, kind: str) -> None:
    logs = [f"{n}.log" for n in _names(path) if re.fullmatch(r"\w[\w.-]*", n)]  # never a path: "../x"
    names = list(COMPARE_OUTPUTS) if kind == "compare" else list(RUN_OUTPUTS) + logs
    for name in names:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def _names(run_dir: Path) -> list[str]:
    """Federate names (and ``broker``) of the federation.json in ``run_dir`` or, for a multi-host build
    (``harmony build --hosts``), of every ``run_dir/<host>/federation.json``; empty if there is none."""
    try:
        if (run_dir / "federation.json").is_file():
            return [str(f["name"]) for f in json.loads((run_dir / "federation.json").read_text())["federates"]]
        hosts = {p.parent.name: json.loads(p.read_text()) for p in sorted(run_dir.glob("*/federation.json"))}
        return [str(f["name"]) for folder, h in hosts.items() if h.get("host") == folder for f in h["federates"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _log_of(run_dir: Path, name: str) -> Path:
    """A federate's log: ``helics run`` writes it beside the runner JSON (``run_dir/<host>/`` on multi-host)."""
    log = run_dir / f"{name}.log"
    return log if log.is_file() else next(iter(sorted(run_dir.glob(f"*/{name}.log"))), log)


# ---------------------------------------------------------------------------------------------------------------
# running, with every process in one group that is ended on every way out


@dataclass
class Launch:
    """What one ``helics run`` did: its exit status and, per federate process, when it stopped and how."""

    code: int
    stopped: dict[str, float] = field(default_factory=dict)      # federate -> seconds after launch
    exit_status: dict[str, int] = field(default_factory=dict)    # federate -> waitpid-style status, if seen
    bind_failure: bool = False                                   # a port was taken: relaunch on other ports


class Terminated(SystemExit):
    """``harmony`` itself got SIGTERM or SIGHUP: the federation was ended; exit 128 + signal."""


def run_federation(federation_json: Path, run_dir: Path, duration_s: int, *, show_progress: bool = True,
                   timeout_s: float | None = None) -> Launch:
    """Run ``helics run --path federation_json`` in its own session and wait; end the whole group on the way out.

    The output of ``helics run`` is kept in ``run_dir/helics_run.log``.
    """
    cmd = _helics_command() + ["run", "--path", str(federation_json), "--silent"]
    started = time.monotonic()
    names = [n for n in _names(federation_json.parent) if n != "broker"]
    with (run_dir / "helics_run.log").open("w") as out, _signals_end_run():
        proc = subprocess.Popen(cmd, env=helics_env(), cwd=federation_json.parent, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        reaper = _Reaper(proc.pid)
        watch = _Watch(proc.pid, names, started)
        progress = Progress(run_dir, duration_s, started) if show_progress else None
        try:
            while proc.poll() is None:
                time.sleep(POLL_S)
                watch.poll()
                if progress is not None:
                    progress.update()
                if timeout_s is not None and time.monotonic() - started > timeout_s:
                    click.echo(f"\nfederation exceeded the time limit of {timeout_s:.0f} s and was stopped", err=True)
                    break
        finally:
            end_group(proc)
            reaper.stand_down()
    if progress is not None:
        progress.close()
    logs = [run_dir / f"{n}.log" for n in names] + [run_dir / "broker.log", run_dir / "helics_run.log"]
    bind = any(BIND_FAILURE.search(p.read_text(errors="replace")) for p in logs if p.is_file())
    return Launch(proc.returncode if proc.returncode is not None else -9, watch.stopped, watch.status, bind)


class _Reaper:
    """``runner.reaper`` watching this process on behalf of the federation's group (see that module)."""

    def __init__(self, pgid: int):
        read_end, self._write_end = os.pipe()
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "runner.reaper", str(read_end), str(pgid)],
                                          pass_fds=(read_end,), start_new_session=True, stdin=subprocess.DEVNULL,
                                          cwd=Path(__file__).resolve().parents[1])
        finally:
            os.close(read_end)

    def stand_down(self) -> None:
        """The group is ended: tell the watcher so and wait for it."""
        with contextlib.suppress(OSError):
            os.write(self._write_end, reaper_mod.DONE)
        os.close(self._write_end)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=10)


def end_group(proc: subprocess.Popen, wait_s: float = 10.0) -> None:
    """Kill every process of ``proc``'s process group (``helics run``, broker, federates) and wait until none
    is left, so their ports are free when we return."""
    if proc.poll() is None or _group_members(proc.pid):  # while a member lives, the group id cannot be reused
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=wait_s)
    deadline = time.monotonic() + wait_s
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


@contextlib.contextmanager
def _signals_end_run():
    """While a federation runs, SIGTERM and SIGHUP raise :class:`Terminated` so the group is ended first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Terminated(128 + signum)

    saved = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


class _Watch:
    """Notes when each federate process stops, and its exit status when it is seen as a zombie before
    ``helics run`` reaps it (``/proc/<pid>/stat`` field 52)."""

    def __init__(self, pgid: int, names: list[str], started: float):
        self.pgid, self.names, self.started = pgid, names, started
        self.pids: dict[int, str] = {}
        self.stopped: dict[str, float] = {}
        self.status: dict[str, int] = {}

    def poll(self) -> None:
        now = time.monotonic() - self.started
        for pid, name in list(self.pids.items()):
            state, status = _proc_state(pid)
            if state == "Z" and name not in self.status:
                self.status[name] = status
            if state in ("Z", None) and name not in self.stopped:
                self.stopped[name] = now
        if len(self.pids) < len(self.names):
            self._discover()

    def _discover(self) -> None:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            pid = int(stat.parent.name)
            if pid in self.pids:
                continue
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError):
                continue
            if int(fields[2]) != self.pgid:
                continue
            for arg in cmdline:
                name = Path(arg.decode(errors="replace")).stem
                if arg.endswith(b".json") and name in self.names:
                    self.pids[pid] = name


def _proc_state(pid: int) -> tuple[str | None, int]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None, 0
    status = int(fields[49]) if len(fields) > 49 else 0  # field 52 of stat counts pid and comm
    return fields[0], status


class Progress:
    """Simulated time of the slowest feeder (from its recorded steps, flushed every simulated half hour).

    On a terminal: one live line with a bar, simulated and wall time and the estimated time left; elsewhere
    (a log, CI): one line each time another simulated hour is complete.
    """

    WIDTH = 24

    def __init__(self, run_dir: Path, duration_s: int, started: float, *, tty: bool | None = None):
        self.run_dir, self.duration_s, self.started = run_dir, duration_s, started
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.hours_logged = 0

    def update(self) -> None:
        done = min(_feeder_rows(self.run_dir) * 300.0, self.duration_s)
        wall = time.monotonic() - self.started
        if self.tty:
            filled = int(self.WIDTH * done / self.duration_s)
            eta = f"{wall * (self.duration_s - done) / done:5.0f} s" if done else "    ?"
            click.echo(f"\r  [{'#' * filled}{'.' * (self.WIDTH - filled)}] simulated {_hhmm(done)} / "
                       f"{_hhmm(self.duration_s)}   wall {wall:5.0f} s   left {eta}", nl=False, err=True)
        elif int(done // 3600) > self.hours_logged:
            self.hours_logged = int(done // 3600)
            click.echo(f"  simulated {_hhmm(done)} / {_hhmm(self.duration_s)}, wall {wall:.0f} s", err=True)

    def close(self) -> None:
        if self.tty:
            click.echo("", err=True)


def _feeder_rows(run_dir: Path) -> int:
    counts = []
    for part in (run_dir / "parts").glob("feeder_*/feeder_steps.csv"):
        with part.open() as fh:
            counts.append(sum(1 for _ in fh) - 1)
    return min(counts) if counts else 0


def _hhmm(seconds: float) -> str:
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}"


# ---------------------------------------------------------------------------------------------------------------
# did every federate finish?


def expected_steps(kind: str, mode: str, duration_s: int) -> int:
    """How many steps a federate of ``kind`` takes in ``mode`` over ``duration_s``."""
    from federates.common.timebase import schedule

    return sum(1 for _ in schedule(phases_of(kind, mode), duration_s))


# the table of each kind that must reach the last 5-minute tick of the span (its rows are stamped with the tick)
END_TABLE = {"feeder": "feeder_steps", "prosumer": "prosumer_steps", "transmission": "transmission_steps"}


@dataclass
class Unfinished:
    name: str
    reached_s: float | None
    duration_s: int
    cause: str
    last_line: str
    stopped_s: float = float("inf")

    def describe(self) -> str:
        reached = "nothing recorded" if self.reached_s is None else f"recorded up to {_hhmm(self.reached_s)}"
        line = f"{self.name}: {self.cause}; {reached} of {_hhmm(self.duration_s)} simulated"
        return line + (f"; last log line: {self.last_line}" if self.last_line else "")


def unfinished(run_dir: Path, launch: Launch | None = None) -> list[Unfinished]:
    """The federates of ``run_dir/federation.json`` that did not finish, the first to stop first.

    Finished means: its ``federate_stats`` row is there with every step of its schedule, no ``FAILED`` line in
    its log, and (feeders, prosumers) its table reaches the last tick of the span. Only our federates are
    checked: an external one (``harmony build --external``) need not write our tables.
    """
    run_dir = Path(run_dir)
    # ours are those with a config in federates/; an entry without one (a helics_recorder or helics_player added
    # by hand) and a federate built --external (no entry at all) are someone else's: not checked
    names = [n for n in _names(run_dir) if n != "broker" and (run_dir / "federates" / f"{n}.json").is_file()]
    if not names:
        raise ConfigError(f"{run_dir}: no federation.json with federates; give the folder that "
                          "`harmony build --out` or `harmony run --out` wrote")
    launch = launch or Launch(code=0)
    signals = _signals_from_helics_log(run_dir)
    out = []
    for name in names:
        runtime = json.loads((run_dir / "federates" / f"{name}.json").read_text())["runtime"]
        problem = _check_federate(run_dir, name, runtime)
        if problem is None:
            continue
        cause, last = _cause(run_dir, name, problem, launch.exit_status.get(name), signals.get(name))
        out.append(Unfinished(name, _reached(run_dir, name), runtime["duration_s"], cause, last,
                              launch.stopped.get(name, float("inf"))))
    # the first to stop first; among those seen stopping in the same poll, one already reaped by `helics run`
    # stopped before those it then killed (still zombies, their status seen)
    relayed = [u for u in out if u.cause.startswith("HelicsException")]
    first = sorted((u for u in out if u not in relayed),
                   key=lambda u: (u.stopped_s, u.name in launch.exit_status, u.name))
    return first + relayed


def _check_federate(run_dir: Path, name: str, runtime: dict) -> str | None:
    """None if ``name`` finished, else what is missing."""
    import pandas as pd

    log = _log_of(run_dir, name)
    if log.is_file() and "FAILED:" in log.read_text(errors="replace"):
        return "failed"
    parts = results_dir(run_dir, runtime) / "parts" / name
    stats_csv = parts / "federate_stats.csv"
    stats = pd.read_csv(stats_csv) if stats_csv.is_file() else None
    if stats is None or stats.empty:
        return "no exit report"
    want = expected_steps(runtime["kind"], runtime["mode"], runtime["duration_s"])
    if int(stats["steps"].iloc[-1]) != want:
        return f"stopped after {int(stats['steps'].iloc[-1])} of {want} steps"
    table = END_TABLE.get(runtime["kind"])
    if table is not None:
        last = runtime["duration_s"] - 300
        path = parts / f"{table}.csv"
        if not path.is_file() or pd.read_csv(path, usecols=["time"])["time"].max() < last:
            return f"its {table} table does not reach t={last} s"
    return None


def _cause(run_dir: Path, name: str, problem: str, status: int | None, code: int | None) -> tuple[str, str]:
    """(cause, last log line) of a federate that did not finish."""
    log = _log_of(run_dir, name)
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.is_file() \
        else []
    failed = [ln for ln in lines if "FAILED:" in ln]
    last = LOG_PREFIX.sub("", lines[-1]) if lines else ""
    if failed:
        return re.sub(r"^.*FAILED: ", "", failed[-1]), ""
    if status is not None and os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name} ({problem})", last
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name} ({problem})", last
    if code is not None:
        return f"exited with status {code} ({problem})", last
    return (f"ended without an error ({problem}): killed from outside (e.g. SIGKILL, the out-of-memory killer) "
            "or stopped with the federation"), last


def _signals_from_helics_log(run_dir: Path) -> dict[str, int]:
    """Exit statuses ``helics run`` reported (it does not report -9)."""
    log = run_dir / "helics_run.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    return {m[1]: int(m[2]) for m in re.finditer(r"Process (\S+) exited with return code (-?\d+)", text)}


def results_dir(run_dir: Path, runtime: dict) -> Path:
    """Where a federate of the build in ``run_dir`` records (``runtime.out_dir``: ``run_dir`` itself for
    ``harmony run``, e.g. ``runs/federation`` for the committed ``configs/``; relative to its config file)."""
    out = Path(runtime.get("out_dir") or run_dir)
    return out if out.is_absolute() else (Path(run_dir) / "federates" / out).resolve()


def recorded_in(run_dir: Path) -> Path:
    """The folder the federates of the build in ``run_dir`` record into (their ``parts/``; ``results/`` goes
    beside): ``run_dir`` itself, or the ``--results`` folder the build was given."""
    for config in sorted((Path(run_dir) / "federates").glob("*.json")):
        return results_dir(run_dir, json.loads(config.read_text())["runtime"])
    return Path(run_dir)


def _reached(run_dir: Path, name: str) -> float | None:
    """The latest simulated time ``name`` recorded (its rows are flushed every simulated half hour)."""
    import pandas as pd

    config = run_dir / "federates" / f"{name}.json"
    root = results_dir(run_dir, json.loads(config.read_text())["runtime"]) if config.is_file() else run_dir
    times = []
    for part in (root / "parts" / name).glob("*.csv"):
        with contextlib.suppress(ValueError, pd.errors.EmptyDataError):
            col = pd.read_csv(part, usecols=["time"])["time"]
            if len(col):
                times.append(float(col.max()))
    return max(times) if times else None


def incomplete_run(run_dir: Path, missing: list[Unfinished], helics_code: int | None) -> HarmonyError:
    """The error for a run that did not finish: every federate that stopped early, how far it got and why.

    What was recorded is merged into ``results/`` (marked incomplete by the absence of ``kpis.json``, which is
    deleted if an earlier collect wrote one): no figure may claim a complete run.
    """
    from runner.results import collect

    lines = [("(then) " if u.cause.startswith("HelicsException") else "") + u.describe() for u in missing]
    out = recorded_in(run_dir)  # the build's --results folder, if it was given one
    try:
        collect(out)
    except Exception as exc:  # noqa: BLE001 - the federation's failure is what the user must see
        lines.append(f"(collecting the partial results also failed: {exc})")
    (out / "kpis.json").unlink(missing_ok=True)
    total = len([n for n in _names(run_dir) if n != "broker"])
    status = "" if helics_code is None else f" (helics run exited with status {helics_code})"
    return HarmonyError(f"the federation did not finish: {len(missing)} of {total} federates stopped early{status}; "
                        f"the results so far are in {out}/results (incomplete: no kpis.json)\n  "
                        + "\n  ".join(lines))
