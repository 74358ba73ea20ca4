"""A whole simulated day at growing sizes, against the floor of its parts measured in the same run.

For each case `harmony run` (a real HELICS federation, automatic sizing unless the scenario fixes
``federation.prosumers_per_federate``) is timed for:
  wall        seconds from launch to results
  cpu         CPU seconds (user + system) of the whole process tree (harmony, helics run, broker, federates)
  peak_rss    the largest sum of resident memory over the whole process tree, sampled every 0.2 s
and compared with the floor of its parts, each measured right after the run on the same machine:
  opendss     the day's power flows of every feeder as a bare opendssdirect loop (set loads, solve, read the
              results), at the run's prosumer loads: benchmarks/feeder_step.py ``time_bare``, scaled to the day
  hems        the day's HEMS LPs (market fleet at each Layer I bid and commit gate, its top-down twin at each
              bid gate) as warm persistent highspy re-solves of the same LPs (benchmarks/hems_round.py
              ``highspy_warm``, measured on a sample of the run's own prosumers, scaled to the day's count)
  helics      bare HELICS: a broker and one process per federate of the run with the same publications and
              subscriptions asking for the same times and doing nothing else (from entering executing mode)
  floor = opendss + hems + helics (the parts run one after the other); ratio = wall / floor.

Cases (all sized automatically: ``federation.prosumers_per_federate`` cleared): default (40 prosumers),
default_all (every house a prosumer, 110), ieee8500 (IEEE 8500-node feeder, every load a prosumer),
ieee8500_unbal (Master-unbal.dss, 2,354 loads). Needs ../shared/data/feeders.
Run: ``python benchmarks/scale.py [--cases default,ieee8500] [--hours 24]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FEEDERS = REPO.parent / "shared" / "data" / "feeders" / "8500-Node"
ALL = "feeders.0.prosumers.placement=all"
AUTO = ["--set", "federation.prosumers_per_federate=null"]  # default.yaml pins 10 (its committed federation.json)
SWAP = ["--set", "feeders.0.vpp.community_battery=null"]  # the default's community battery sits on an LV bus
CASES = {
    "default": AUTO,
    "default_all": [*AUTO, "--set", ALL, "--set", "feeders.1.prosumers.placement=all"],
    "ieee8500": [*AUTO, *SWAP, "--feeder", str(FEEDERS / "Master.dss"), "--set", ALL],
    "ieee8500_unbal": [*AUTO, *SWAP, "--feeder", str(FEEDERS / "Master-unbal.dss"), "--set", ALL],
}
HEMS_SAMPLE = 200  # prosumers whose LPs are solved directly for the HEMS floor
OPENDSS_STEPS = 30  # power flows timed per feeder for the OpenDSS floor


# ---- the run: wall, CPU and peak memory of the whole process tree -----------------------------------------------
def _tree_rss_bytes(root: int) -> int:
    """Sum of VmRSS over ``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/statm") as f:
                rss[int(d)] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def timed_run(args: list[str], out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "run", "--out", str(out), "--force", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_bytes(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    log, _ = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"harmony run {' '.join(args)} failed:\n{log[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    launching = next((line for line in log.splitlines() if line.startswith("launching")), "")
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_gb": round(peak[0] / 2**30, 2),
            "launch": launching}


# ---- the floor of its parts -------------------------------------------------------------------------------------
def _configs(run_dir: Path, kind: str) -> list[dict]:
    return [c for c in (json.loads(p.read_text()) for p in sorted((run_dir / "federates").glob("*.json")))
            if c["runtime"]["kind"] == kind]


def opendss_floor(run_dir: Path, ticks: int) -> float:
    from feeder_step import injection_sequence, time_bare

    total = 0.0
    for cfg in _configs(run_dir, "feeder"):
        loads = sorted(set(cfg["prosumer_loads"].values()))
        master = Path(cfg["feeder"]["master"])
        per_step = time_bare(master, loads, injection_sequence(loads, OPENDSS_STEPS, seed=7), read=True)
        total += per_step * ticks
    return total


def hems_lp_count(run_dir: Path) -> int:
    """LPs one day of the run solves: each prosumer at every bid gate (and its twin) and commit gate, plus
    the first plan of slot 0."""
    from federates.common.config import P2P_MODES
    from federates.common.timebase import Phase, schedule
    from runner.launch import phases_of

    n = 0
    for cfg in _configs(run_dir, "prosumer"):
        rt = cfg["runtime"]
        steps = list(schedule(phases_of("prosumer", rt["mode"]), rt["duration_s"]))
        bids = sum(1 for s in steps if s.phase == Phase.L1_BID)
        commits = sum(1 for s in steps if s.phase == Phase.L1_COMMIT)
        twin = rt["mode"] in P2P_MODES
        n += len(cfg["prosumers"]) * ((bids + 1) * (2 if twin else 1) + commits)
    return n


def hems_floor(run_dir: Path) -> tuple[float, int]:
    """(seconds for the day's LPs as warm highspy re-solves, how many LPs)."""
    from hems_round import _full_lp, highspy_warm

    from federates.prosumer.devices import Location, ProsumerConfig, TariffConfig
    from federates.prosumer.fleet import ProsumerFleet

    cfgs = _configs(run_dir, "prosumer")
    pros = [ProsumerConfig.model_validate(p) for c in cfgs for p in c["prosumers"]][:HEMS_SAMPLE]
    rt = cfgs[0]["runtime"]
    fleet = ProsumerFleet(pros, TariffConfig.model_validate(cfgs[0]["tariff"]),
                          Location.model_validate(cfgs[0]["location"]), datetime.fromisoformat(rt["start"]),
                          n_steps=288 * 2, seed=rt["seed"])
    fleet.plan(0.0, 1)
    for j in range(6):
        fleet.dispatch(j * 300, {})
    prev, cur = fleet.hems_inputs(0.0, 1), fleet.hems_inputs(1800.0, 2)
    solvers = [st.solver for st in fleet._states]
    lps_prev = [_full_lp(s, d) for s, d in zip(solvers, prev, strict=True)]
    per_lp = highspy_warm(cur, lps_prev, solvers) / len(pros)
    n = hems_lp_count(run_dir)
    return per_lp * n, n


def bare_federate(config: Path, port: int) -> None:
    """One federate of the run with its publications and subscriptions, asking for its times, nothing else;
    prints the wall and CPU seconds (its HELICS core threads included) from entering executing mode to the last
    grant, so Python start-up is not counted."""
    import helics as h

    from federates.common.timebase import grant_times
    from runner.launch import phases_of

    cfg = json.loads(config.read_text())
    rt = cfg["runtime"]
    info = h.helicsCreateFederateInfo()
    h.helicsFederateInfoSetCoreTypeFromString(info, "zmq")
    h.helicsFederateInfoSetCoreInitString(info, f"--federates=1 --broker_address=tcp://127.0.0.1:{port}")
    h.helicsFederateInfoSetFlagOption(info, h.HELICS_FLAG_UNINTERRUPTIBLE, True)
    fed = h.helicsCreateValueFederate(rt["name"], info)
    for key in rt["publications"]:
        h.helicsFederateRegisterGlobalTypePublication(fed, key, "string", "")
    for key in rt["subscriptions"]:
        h.helicsFederateRegisterSubscription(fed, key, "")
    t0, c0 = time.perf_counter(), time.process_time()
    h.helicsFederateEnterExecutingMode(fed)
    for t in grant_times(phases_of(rt["kind"], rt["mode"]), rt["duration_s"]):  # phases of one second: one grant
        h.helicsFederateRequestTime(fed, t)
    print(json.dumps({"name": rt["name"], "s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}))
    h.helicsFederateDisconnect(fed)
    h.helicsFederateFree(fed)
    h.helicsCloseLibrary()


def helics_floor(run_dir: Path) -> tuple[float, float]:
    """(wall of the slowest bare federate, CPU seconds of all bare federates after start-up)."""
    from runner.build import free_port

    configs = sorted((run_dir / "federates").glob("*.json"))
    port = free_port()
    broker_exe = Path(sys.executable).parent / "helics_broker"
    broker = subprocess.Popen([str(broker_exe), "-f", str(len(configs)), f"--port={port}", "--loglevel=warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    feds = [subprocess.Popen([sys.executable, __file__, "--bare-federate", str(c), "--port", str(port)],
                             cwd=REPO, stdout=subprocess.PIPE, text=True) for c in configs]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in feds]
    broker.wait(timeout=60)
    return max(o["s"] for o in outs), sum(o["cpu_s"] for o in outs)


# ---- one case ---------------------------------------------------------------------------------------------------
def run_case(name: str, hours: float, keep: Path) -> dict:
    args = [*CASES[name], "--hours", f"{hours:g}", "--quiet"]
    run_dir = keep / name
    fig = {"case": name, **timed_run(args, run_dir)}
    kpis = json.loads((run_dir / "kpis.json").read_text())
    fig["prosumers"] = kpis.get("prosumers")
    fig["federates"] = len(list((run_dir / "federates").glob("*.json")))
    ticks = int(hours * 12)
    fig["floor_opendss_s"] = round(opendss_floor(run_dir, ticks), 2)
    hems_s, n_lps = hems_floor(run_dir)
    fig["floor_hems_s"], fig["hems_lps"] = round(hems_s, 2), n_lps
    helics_wall, helics_cpu = helics_floor(run_dir)
    fig["floor_helics_s"], fig["bare_helics_cpu_s"] = round(helics_wall, 2), round(helics_cpu, 1)
    floor = fig["floor_opendss_s"] + fig["floor_hems_s"] + fig["floor_helics_s"]
    fig["floor_s"] = round(floor, 1)
    fig["ratio_wall_to_floor"] = round(fig["wall_s"] / floor, 2)
    fig["ratio_cpu_to_floor"] = round(fig["cpu_s"] / floor, 2)
    return fig


def machine() -> dict:
    load = os.getloadavg()
    mem = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"), "cores": len(os.sched_getaffinity(0)),
            "memory_gb": round(mem / 2**20, 1), "python": platform.python_version(),
            "load_avg_1m_at_start": round(load[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--keep", help="folder for the runs (default: a temporary folder)")
    parser.add_argument("--bare-federate", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_federate:
        bare_federate(Path(args.bare_federate), args.port)
        return
    info = machine()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(args.keep).resolve() if args.keep else Path(tmp)
        header = (f"{'case':<16}{'prosumers':>10}{'feds':>6}{'wall s':>8}{'CPU s':>8}{'peak GB':>8}"
                  f"{'floor s':>9}{'dss':>7}{'hems':>7}{'helics':>7}{'wall/floor':>11}")
        print(header, flush=True)
        for name in args.cases.split(","):
            f = run_case(name, args.hours, keep)
            results.append(f)
            print(f"{name:<16}{f['prosumers']:>10}{f['federates']:>6}{f['wall_s']:>8.1f}{f['cpu_s']:>8.1f}"
                  f"{f['peak_rss_gb']:>8.2f}{f['floor_s']:>9.1f}{f['floor_opendss_s']:>7.1f}{f['floor_hems_s']:>7.1f}"
                  f"{f['floor_helics_s']:>7.1f}{f['ratio_wall_to_floor']:>11.2f}", flush=True)
    print(json.dumps({"benchmark": "scale", "hours": args.hours, "machine": info, "cases": results}))


if __name__ == "__main__":
    main()
