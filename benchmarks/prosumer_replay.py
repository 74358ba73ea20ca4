"""One prosumer federate's compute over a recorded run, without HELICS: where its CPU goes, and the same outputs?

A run made with ``HARMONY_RECORD_PAYLOADS=1`` holds every payload the VPP published (setpoints, reserve,
positions) with its time. This replays one prosumer federate of that run as its federate loop does
(``federates/prosumer/federate.py``): the same fleet and top-down twin, the same phases, each VPP payload read
at the first phase after it was published. It times each part (dispatch, twin dispatch, headroom, bid plans,
twin plans, commit plans, message building) in CPU seconds and checks that the orders and plans it would
publish are the recorded ones and that its step records are the run's ``prosumer_steps`` rows, exactly.

Run: ``python benchmarks/prosumer_replay.py RUN_DIR [FEDERATE] [--profile FILE]`` (default: the largest prosumer
federate); exit 1 when an output differs.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from federates.common.config import ANCILLARY_MODES, P2P_MODES
from federates.common.messages import Positions, ReserveCommitments, Setpoints
from federates.common.timebase import TICK_S, Phase, schedule
from federates.common.wiring import ProsumerFederate, load_federate_config
from federates.prosumer.federate import _order_book, _plans
from federates.prosumer.fleet import ProsumerFleet, Setpoint

STEP_COLUMNS = ["pv_kw", "load_kw", "flex_kw", "battery_kw", "soc_kwh", "grid_kw", "curtailed_kw", "p2p_commit_kw",
                "reserve_up_kw", "reserve_down_kw", "delta_p_kw", "unmet_flex_kwh", "topdown_grid_kw",
                "topdown_soc_kwh"]


class Feed:
    """The recorded payloads of one key, read as HELICS delivers them: the latest one published before now."""

    def __init__(self, rows: pd.DataFrame):
        self.times = rows["time_s"].to_numpy(float)
        self.texts = rows["payload"].tolist()
        self.next = 0

    def read(self, now_s: float) -> str | None:
        j = int(np.searchsorted(self.times, now_s, side="left"))  # published strictly before now
        if j <= self.next:
            return None
        self.next = j
        return self.texts[j - 1]


class Timer:
    def __init__(self):
        self.cpu: dict[str, float] = defaultdict(float)

    def __call__(self, what: str, fn, *args):
        t0 = time.process_time()
        out = fn(*args)
        self.cpu[what] += time.process_time() - t0
        return out


def _time_highs_runs(timer: Timer) -> None:
    """Count the CPU seconds inside ``highspy.Highs.run`` (the solver itself) as the part ``hems solver``."""
    import highspy

    run = highspy.Highs.run
    if getattr(run, "timed", False):
        return

    def timed(self):
        t0 = time.process_time()
        out = run(self)
        timer.cpu["(of which solver run)"] += time.process_time() - t0
        timer.cpu["LPs"] += 1
        return out

    timed.timed = True
    highspy.Highs.run = timed


class Replay:
    """One prosumer federate's loop (``federates/prosumer/federate.py``) fed from recorded payloads."""

    def __init__(self, run_dir: Path, name: str, timer: Timer):
        self.name, self.t = name, timer
        self.cfg: ProsumerFederate = load_federate_config(run_dir / "federates" / f"{name}.json", ProsumerFederate)
        pay = pd.read_parquet(run_dir / "results" / "payloads.parquet")
        self.feeds = {k: Feed(g.sort_values("time_s", kind="mergesort")) for k, g in pay.groupby("key")}
        self.recorded = {k: g["payload"].tolist() for k, g in pay[pay.federate == name].groupby("key")}
        self.out: dict[str, list[str]] = defaultdict(list)
        self.rows: list = []

    def read(self, key: str, now: float) -> str | None:
        feed = self.feeds.get(key)
        return feed.read(now) if feed is not None else None

    def run(self) -> ProsumerFleet:
        rt, t = self.cfg.runtime, self.t
        cfg = self.cfg
        p2p = rt.mode in P2P_MODES
        fleet = t("set-up", lambda: ProsumerFleet(cfg.prosumers, cfg.tariff, cfg.location, rt.start,
                                                  n_steps=rt.duration_s // TICK_S, seed=rt.seed, p2p_enabled=p2p,
                                                  vpp_enabled=rt.mode in ANCILLARY_MODES))
        twin = t("set-up", fleet.topdown_twin) if p2p else None
        pending = t("plan (first)", fleet.plan, 0.0, 0)
        if twin is not None:
            t("plan (first)", twin.plan, 0.0, 0)
        phases = {Phase.DISPATCH, Phase.L1_BID, Phase.L1_COMMIT} if p2p else {Phase.DISPATCH, Phase.L1_BID}
        for step in schedule(phases, rt.duration_s):
            if step.phase == Phase.DISPATCH:
                self.dispatch(fleet, twin, step.time_s, p2p)
            elif step.phase == Phase.L1_BID:
                bids = t("plan (bid)", fleet.plan, step.time_s, step.l1_slot)
                if twin is not None:
                    t("plan (twin)", twin.plan, step.time_s, step.l1_slot)
                if p2p:
                    self.out[f"{self.name}/orders"].append(t("messages", _order_text, step, self.name, bids))
            else:
                self.commit(fleet, step)
                bids = pending + t("plan (commit)", fleet.plan, step.time_s, step.l1_slot)
                pending = []
                self.out[f"{self.name}/plans"].append(t("messages", _plans_text, step, bids))
        return fleet

    def dispatch(self, fleet: ProsumerFleet, twin: ProsumerFleet | None, now: float, p2p: bool) -> None:
        t, vpp, mine = self.t, self.cfg.vpp, set(fleet.names)
        setpoints = {}
        text = self.read(f"{vpp}/reserve", now) if p2p else None
        if text is not None:
            r = t("messages", ReserveCommitments.loads, text)
            fleet.commit_reserve(r.slot, {p: v for p, v in r.up_kw.items() if p in mine},
                                 {p: v for p, v in r.down_kw.items() if p in mine})
        text = self.read(f"{vpp}/setpoints", now) if p2p else None
        if text is not None:
            msg = t("messages", Setpoints.loads, text)
            setpoints = {p: Setpoint(s.delta_p_kw, s.max_export_kw, s.max_import_kw)
                         for p, s in msg.setpoints.items() if p in mine}
        records = t("dispatch", fleet.dispatch, now, setpoints)
        td = t("dispatch (twin)", twin.dispatch, now, {}) if twin is not None else None
        self.rows += [(now, r, td[k] if td is not None else None) for k, r in enumerate(records)]
        t("headroom", fleet.headroom_kw, {r.prosumer: r.battery_kw for r in records})

    def commit(self, fleet: ProsumerFleet, step) -> None:
        text = self.read(f"{self.cfg.vpp}/positions", step.time_s)
        if text is not None:
            pos = self.t("messages", Positions.loads, text)
            if pos.slot == step.l1_slot:
                mine = set(fleet.names)
                fleet.commit_p2p(step.l1_slot, {p: v for p, v in pos.net_kwh.items() if p in mine})

    def problems(self, run_dir: Path, mine: set[str]) -> list[str]:
        """What differs from the recorded run: published payloads and step records."""
        out = []
        for key, texts in self.out.items():
            want = self.recorded.get(key, [])
            if texts != want:
                bad = next((i for i, (a, b) in enumerate(zip(texts, want, strict=False)) if a != b),
                           min(len(texts), len(want)))
                out.append(f"{key}: payload {bad} of {len(texts)} differs from the recorded one ({len(want)})")
        steps = pd.read_parquet(run_dir / "results" / "prosumer_steps.parquet")
        steps = steps[steps.prosumer.isin(mine)].sort_values(["time_s", "prosumer"], kind="mergesort")
        nan = float("nan")
        mine_rows = pd.DataFrame(
            [{"time_s": tm, "prosumer": r.prosumer, **{c: getattr(r, c) for c in STEP_COLUMNS[:12]},
              "topdown_grid_kw": d.grid_kw if d else nan, "topdown_soc_kwh": d.soc_kwh if d else nan}
             for tm, r, d in self.rows]).sort_values(["time_s", "prosumer"], kind="mergesort")
        for c in STEP_COLUMNS:
            a, b = mine_rows[c].to_numpy(float), steps[c].to_numpy(float)
            if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
                out.append(f"prosumer_steps.{c} differs")
        return out


def _order_text(step, name: str, bids) -> str:
    return _order_book(step, name, bids).dumps()


def _plans_text(step, bids) -> str:
    return _plans(step, bids).dumps()


def replay(run_dir: Path, name: str) -> dict:
    t = Timer()
    _time_highs_runs(t)
    c0 = time.process_time()
    r = Replay(run_dir, name, t)
    fleet = r.run()
    total = time.process_time() - c0
    problems = r.problems(run_dir, set(fleet.names))
    return {"federate": name, "prosumers": len(fleet.names), "cpu_s": round(total, 2),
            "parts_cpu_s": {k: round(v, 2) for k, v in sorted(t.cpu.items(), key=lambda kv: -kv[1])},
            "identical": not problems, "problems": problems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("federate", nargs="?")
    parser.add_argument("--profile", help="write a cProfile file")
    args = parser.parse_args()
    name = args.federate
    if name is None:
        sizes = {p.stem: len(json.loads(p.read_text()).get("prosumers", []))
                 for p in (args.run_dir / "federates").glob("prosumers_*.json")}
        name = max(sizes, key=sizes.get)
    if args.profile:
        prof = cProfile.Profile(time.process_time)
        fig = prof.runcall(replay, args.run_dir, name)
        prof.dump_stats(args.profile)
    else:
        fig = replay(args.run_dir, name)
    print(json.dumps(fig, indent=1))
    sys.exit(0 if fig["identical"] else 1)


if __name__ == "__main__":
    main()
