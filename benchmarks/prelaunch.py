"""Time what `harmony run` does before it launches the federation: the pre-launch checks (``resolve_scenario``:
scenario, feeders compiled and placed, files, memory) and the build (configs, wiring, federation.json, placement),
into a temporary folder.

Run: ``python benchmarks/prelaunch.py [SCENARIO] [--feeder MASTER] [--set PATH=VALUE ...]`` (the options of
`harmony run`); prints one JSON object: CPU and wall seconds of the imports, the checks and the build.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

CPU0, WALL0 = time.process_time(), time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?")
    ap.add_argument("--feeder")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    args = ap.parse_args()

    from runner.build import build, prosumer_federate_size, write_placement
    from runner.cli import resolve_scenario

    marks = [("imports", time.process_time(), time.perf_counter())]
    sc = resolve_scenario(args.scenario, None, None, args.feeder, args.overrides)
    marks.append(("checks", time.process_time(), time.perf_counter()))
    with tempfile.TemporaryDirectory(prefix="prelaunch-") as tmp:
        _, configs, placed = build(sc, Path(tmp), broker_port=sc.federation.broker_port)
        write_placement(Path(tmp), placed)
        prosumer_federate_size(sc, placed)
    marks.append(("build", time.process_time(), time.perf_counter()))
    out, cpu, wall = {}, CPU0, WALL0
    for name, c, w in marks:
        out[f"{name}_cpu_s"], out[f"{name}_wall_s"] = round(c - cpu, 3), round(w - wall, 3)
        cpu, wall = c, w
    out["cpu_s"], out["wall_s"] = round(cpu - CPU0, 3), round(wall - WALL0, 3)
    out["federates"], out["prosumers"] = len(configs), sum(len(p.prosumers) for p in placed)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
