"""Time the end of a run (``runner.results.finish_run``: collect, ledger, KPIs, Parquet) on a recorded run folder
and check that it writes the same bytes as the run did.

The recorded run is never written to: its ``parts/`` and ``federates/`` are linked into a scratch folder, where
``finish_run`` writes ``results/`` and ``kpis.json``; every file it wrote is then compared byte for byte with the
recorded run's (``kpis.json`` without ``wall_s``), and the figures it returns with the recorded ``kpis.json``.

Run: ``python benchmarks/finish.py RUN_DIR [--set PATH=VALUE ...] [--repeat N] [--profile FILE]``; ``--set``
gives the scenario overrides the run was made with where they change what ``finish_run`` reads (mode, tariff,
feeders' names, fees and markets; the default scenario otherwise). Prints one JSON object (CPU and wall seconds
of the best repeat, whether every output is identical); exit 1 when an output differs.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def same_outputs(recorded: Path, scratch: Path) -> list[str]:
    """Names of the outputs of ``scratch`` that differ from (or are missing in) ``recorded``."""
    bad = []
    written = sorted(p.name for p in (scratch / "results").iterdir())
    expected = sorted(p.name for p in (recorded / "results").iterdir())
    bad += [f"results/{n} (not written)" for n in sorted(set(expected) - set(written))]
    bad += [f"results/{n} (not in the recorded run)" for n in sorted(set(written) - set(expected))]
    for name in sorted(set(written) & set(expected)):
        if (scratch / "results" / name).read_bytes() != (recorded / "results" / name).read_bytes():
            bad.append(f"results/{name}")
    ours, theirs = (json.loads((d / "kpis.json").read_text()) for d in (scratch, recorded))
    ours.pop("wall_s", None)
    theirs.pop("wall_s", None)
    if ours != theirs:
        keys = sorted(set(ours) | set(theirs))
        bad.append("kpis.json: " + ", ".join(k for k in keys if ours.get(k) != theirs.get(k)))
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", type=Path, help="write a cProfile of the last repeat here")
    args = ap.parse_args()

    from federates.common.config import load_scenario
    from runner.results import finish_run

    recorded = args.run_dir.resolve()
    sc = load_scenario(REPO / "configs" / "scenarios" / "default.yaml", args.overrides)
    wall_s = json.loads((recorded / "kpis.json").read_text()).get("wall_s")
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="finish-") as tmp:
        scratch = Path(tmp)
        for sub in ("parts", "federates"):
            (scratch / sub).symlink_to(recorded / sub)
        for i in range(args.repeat):
            prof = cProfile.Profile() if args.profile and i == args.repeat - 1 else None
            cpu, wall = time.process_time(), time.perf_counter()
            if prof:
                prof.enable()
            figures = finish_run(sc, scratch, wall_s=wall_s)
            if prof:
                prof.disable()
                prof.dump_stats(args.profile)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if not best or cpu < best["cpu_s"]:
                best = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3)}
        bad = same_outputs(recorded, scratch)
        returned = json.loads(json.dumps({k: None if v != v else v for k, v in figures.items()}))  # NaN: null
        if returned != json.loads((scratch / "kpis.json").read_text()):
            bad.append("figures returned by finish_run (the printed summary)")
    print(json.dumps({"run": str(recorded), **best, "identical": not bad, "differ": bad}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
