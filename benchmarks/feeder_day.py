"""A full simulated day through ``harmony run --feeder MASTER`` per feeder: the feeder swap, measured.

Each run is the default scenario (configs/scenarios/default.yaml: mode full, 2 communities, 40 prosumers,
2024-06-21) with only the first feeder's master replaced, exactly as a user would type it:
``harmony run --feeder MASTER --hours 24 --out DIR --quiet``. Feeders: IEEE 123 and the IEEE European LV test
case from ../shared/data/feeders (not in the repo), and the repo's lv_suburb (the default, no --feeder).

Per feeder (the swapped one, named ``suburb`` in the results): wall time of the whole run, the feeder
federate's own compute time (from its log), 5-minute steps solved, converged / non-converged /
converged-on-retry steps, lowest and highest service voltage, head power range and violation-steps.

Run: ``python benchmarks/feeder_day.py [--hours H] [--feeders ieee123,eu_lv,lv_suburb] [--out DIR]``.
The last line is a JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "feeders"
FEEDERS = {
    "ieee123": SHARED / "123Bus" / "IEEE123Master.dss",
    "eu_lv": SHARED / "LVTestCase" / "Master.dss",
    "lv_suburb": None,  # the default scenario's own first feeder
}
COMPUTE = re.compile(r"own compute ([0-9.]+) s")


def run_day(name: str, master: Path | None, hours: float, out: Path) -> dict:
    run_dir = out / name
    args = ["run", "--out", str(run_dir), "--hours", str(hours), "--quiet"]
    if master is not None:
        args += ["--feeder", str(master)]
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "from runner.cli import main; main()", *args],
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    row = {"feeder": name, "exit_code": proc.returncode, "wall_s": round(wall, 1)}
    steps_csv = run_dir / "results" / "feeder_steps.csv"
    if not steps_csv.is_file():
        row["error"] = proc.stderr.strip().splitlines()[-1:]  # nothing recorded: say why
        return row
    steps = pd.read_csv(steps_csv)
    mine = steps[steps.feeder == "suburb"]
    ok = mine[mine.converged]
    log = (run_dir / "feeder_suburb.log").read_text() if (run_dir / "feeder_suburb.log").is_file() else ""
    found = COMPUTE.search(log)
    row.update({
        "feeder_compute_s": float(found.group(1)) if found else None,
        "steps": len(mine),
        "converged": int(mine.converged.sum()),
        "nonconverged": int((~mine.converged).sum()),
        "retried": int(mine.message.astype(str).str.contains("retry").sum()),
        "v_min_pu": round(float(ok.v_min_pu.min()), 4),
        "v_max_pu": round(float(ok.v_max_pu.max()), 4),
        "p_head_min_kw": round(float(ok.p_head_kw.min()), 1),
        "p_head_max_kw": round(float(ok.p_head_kw.max()), 1),
        "violation_steps": int((ok.n_violations > 0).sum()),
    })
    if proc.returncode != 0:
        row["error"] = proc.stderr.strip().splitlines()[-1:]
    return row


def print_table(rows: list[dict]) -> None:
    cols = ["feeder", "exit_code", "wall_s", "feeder_compute_s", "steps", "converged", "nonconverged",
            "retried", "v_min_pu", "v_max_pu", "p_head_min_kw", "p_head_max_kw", "violation_steps"]
    width = [max(len(c), 9) for c in cols]
    print(" ".join(f"{c:>{w}}" for c, w in zip(cols, width, strict=True)))
    for r in rows:
        print(" ".join(f"{r.get(c, '-')!s:>{w}}" for c, w in zip(cols, width, strict=True)))
        if r.get("error"):
            print(f"  {r['feeder']}: {r['error']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--feeders", default=",".join(FEEDERS), help="comma-separated subset of "
                        + ", ".join(FEEDERS))
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    names = [n.strip() for n in args.feeders.split(",") if n.strip()]
    unknown = [n for n in names if n not in FEEDERS]
    if unknown:
        parser.error(f"unknown feeders {unknown}; choose from {list(FEEDERS)}")
    missing = [n for n in names if FEEDERS[n] is not None and not FEEDERS[n].is_file()]
    if missing:
        parser.error(f"reference feeders {missing} not found under {SHARED}")
    with tempfile.TemporaryDirectory(prefix="feeder-day-") as tmp:
        out = (args.out or Path(tmp)).resolve()
        rows = []
        for name in names:
            rows.append(run_day(name, FEEDERS[name], args.hours, out))
            print(f"{name}: done in {rows[-1]['wall_s']} s", file=sys.stderr)
    print_table(rows)
    print(json.dumps({"hours": args.hours, "feeders": rows}))


if __name__ == "__main__":
    main()
