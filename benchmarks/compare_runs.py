"""Are two runs' results identical? Every results table (Parquet, full precision) and kpis.json, exactly.

Only wall-clock figures may differ: federate_stats' wall_s, helics_wait_s and compute_s, and kpis.json's wall_s.
Rows are put in a canonical order first (federates write their rows concurrently).
Run: ``python benchmarks/compare_runs.py RUN_A RUN_B``; exit 0 = identical, 1 = a difference (printed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

WALL_COLUMNS = {"federate_stats": ["wall_s", "helics_wait_s", "compute_s"]}
WALL_KPIS = {"wall_s"}


def tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Every results table of ``run_dir`` without its wall-clock columns, rows in a canonical order."""
    out = {}
    for path in sorted((run_dir / "results").glob("*.parquet")):
        frame = pd.read_parquet(path).drop(columns=WALL_COLUMNS.get(path.stem, []))
        if len(frame):
            frame = frame.sort_values(list(frame.columns), kind="mergesort").reset_index(drop=True)
        out[path.stem] = frame
    return out


def differences(a: Path, b: Path) -> list[str]:
    """What differs between runs ``a`` and ``b`` (empty: identical up to wall-clock figures)."""
    problems = []
    ta, tb = tables(a), tables(b)
    if ta.keys() != tb.keys():
        problems.append(f"tables differ: {sorted(ta.keys() ^ tb.keys())}")
    for name in sorted(ta.keys() & tb.keys()):
        fa, fb = ta[name], tb[name]
        try:
            pd.testing.assert_frame_equal(fa, fb, check_exact=True, obj=name)
        except AssertionError as exc:
            problems.append(f"{name}: {str(exc)[:800]}")
    ka, kb = (json.loads((d / "kpis.json").read_text()) for d in (a, b))
    for key in sorted(ka.keys() | kb.keys()):
        if key not in WALL_KPIS and ka.get(key) != kb.get(key):
            problems.append(f"kpis.json {key}: {ka.get(key)!r} != {kb.get(key)!r}")
    return problems


def main() -> None:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    problems = differences(a, b)
    for p in problems:
        print(p)
    n = len(tables(a))
    print(f"{'identical' if not problems else f'{len(problems)} difference(s)'} ({n} tables + kpis.json)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
