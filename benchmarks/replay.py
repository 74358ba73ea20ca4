"""Replay one federate of a recorded run without HELICS: where its CPU goes, and are its outputs the same?

A run made with ``HARMONY_RECORD_PAYLOADS=1`` holds every payload every federate published, with its time. This
runs one federate's own ``main`` (``federates/<kind>/federate.py``, unchanged) with its HELICS shell replaced by
:class:`ReplayShell`: the same schedule of phases, each subscription read as HELICS delivers it (the latest value
published at an earlier time, once), publications and result rows recorded as the real shell records them. It
reports the CPU seconds of each phase (and of the HiGHS ``run`` calls inside them), then compares every table the
federate wrote (``parts/<federate>/*.csv``: results, exchange record, published payloads) with the recorded run's,
byte for byte (``federate_stats`` aside: wall times).

Run: ``python benchmarks/replay.py RUN_DIR FEDERATE [--profile FILE]``; exit 1 when an output differs. Iterating on
one federate's compute this way takes a fraction of a whole run and checks the "same results" rule at once.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from federates.common.messages import Payload
from federates.common.recorder import Recorder
from federates.common.timebase import Phase, Step, schedule

CPU: dict[str, float] = defaultdict(float)


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


class ReplayShell:
    """Stands in for :class:`federates.common.helics_shell.Shell`: same interface, no HELICS."""

    feeds: dict[str, Feed] = {}

    def __init__(self, runtime):
        self.runtime = runtime
        self.recorder = Recorder(runtime.out_dir, runtime.name)
        self.subs = {key: None for key in runtime.subscriptions}
        self.time_s = 0.0
        self.fallbacks = 0
        self.steps_done = 0

    def steps(self, phases: set[Phase]) -> Iterator[Step]:
        flushed_cycle = 0
        for step in schedule(phases, self.runtime.duration_s):
            self.time_s = step.time_s
            cycle = step.tick_start_s // 1800
            if cycle != flushed_cycle:
                self.recorder.flush()
                flushed_cycle = cycle
            t0 = time.process_time()
            yield step
            CPU[step.phase.name] += time.process_time() - t0
            self.steps_done += 1

    def publish(self, key: str, payload: Payload, target: int) -> None:
        text = payload.dumps()
        self.recorder.add("exchange", time=self.time_s, federate=self.runtime.name, action="publish", key=key,
                          target=target)
        self.recorder.add("payloads", time=self.time_s, federate=self.runtime.name, key=key, target=target,
                          payload=text)

    def read(self, key: str, cls: type[Payload]) -> Payload | None:
        feed = self.feeds.get(key)
        text = feed.read(self.time_s) if feed is not None else None
        if text is None:
            return None
        payload = cls.loads(text)
        target = getattr(payload, "slot", getattr(payload, "interval", -1))
        self.recorder.add("exchange", time=self.time_s, federate=self.runtime.name, action="read", key=key,
                          target=target)
        return payload

    def __enter__(self) -> ReplayShell:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.recorder.flush()


def _time_highs_runs() -> None:
    """Count the CPU seconds inside ``highspy.Highs.run`` (the LP solver itself) and the number of runs."""
    import highspy

    run = highspy.Highs.run

    def timed(self):
        t0 = time.process_time()
        out = run(self)
        CPU["(HiGHS run)"] += time.process_time() - t0
        CPU["(HiGHS runs)"] += 1
        return out

    highspy.Highs.run = timed


def replay(run_dir: Path, name: str, out_dir: Path, profile: str | None = None) -> dict:
    config = run_dir / "federates" / f"{name}.json"
    kind = json.loads(config.read_text())["runtime"]["kind"]
    pay = pd.read_parquet(run_dir / "results" / "payloads.parquet")
    ReplayShell.feeds = {k: Feed(g.sort_values("time_s", kind="mergesort")) for k, g in pay.groupby("key")}
    # the federate's config, pointed at a scratch run folder
    cfg = json.loads(config.read_text())
    cfg["runtime"]["out_dir"] = str(out_dir)
    for key in ("master",):
        if isinstance(cfg.get("feeder"), dict) and not Path(cfg["feeder"][key]).is_absolute():
            cfg["feeder"][key] = str((config.parent / cfg["feeder"][key]).resolve())
    scratch_cfg = out_dir / f"{name}.json"
    scratch_cfg.write_text(json.dumps(cfg))
    module = importlib.import_module(f"federates.{kind}.federate")
    module.Shell = ReplayShell
    _time_highs_runs()
    c0 = time.process_time()
    if profile:
        prof = cProfile.Profile(time.process_time)
        prof.runcall(module.main, str(scratch_cfg))
        prof.dump_stats(profile)
    else:
        module.main(str(scratch_cfg))
    total = time.process_time() - c0
    problems = []
    want_dir, got_dir = run_dir / "parts" / name, out_dir / "parts" / name
    for want in sorted(want_dir.glob("*.csv")):
        if want.stem == "federate_stats":
            continue
        got = got_dir / want.name
        if not got.exists() or got.read_bytes() != want.read_bytes():
            problems.append(f"{want.name} differs" if got.exists() else f"{want.name} not written")
    problems += [f"{p.name} not in the run" for p in got_dir.glob("*.csv") if not (want_dir / p.name).exists()]
    return {"federate": name, "cpu_s": round(total, 2),
            "phases_cpu_s": {k: round(v, 2) for k, v in sorted(CPU.items(), key=lambda kv: -kv[1])},
            "identical": not problems, "problems": problems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run made with HARMONY_RECORD_PAYLOADS=1")
    parser.add_argument("federate")
    parser.add_argument("--profile", help="write a cProfile (CPU time) file")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="replay_"))
    try:
        fig = replay(args.run_dir.resolve(), args.federate, tmp, args.profile)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(fig, indent=1))
    sys.exit(0 if fig["identical"] else 1)


if __name__ == "__main__":
    main()
