"""Do two runs give the same results? Compare two run folders table by table, ignoring only what records the
federation's timing protocol rather than the simulation.

    python tools/same_results.py RUN_A RUN_B           # exit 0: same results, 1: they differ (listed)
    python tools/same_results.py RUN_A RUN_B --exact   # also the second inside each 5-minute tick

Compared: every ``results/<table>.csv`` and ``kpis.json`` (without ``wall_s``), value for value, as text (so
floats must agree to the last digit written). Ignored, because they describe HELICS rather than the system:
``exchange`` and ``payloads`` (when and under which key values crossed HELICS) and ``federate_stats`` (grants,
wall and waiting times). In the other tables a row's ``time`` is the moment a federate recorded it: a merged or
moved phase changes its second inside the 5-minute tick (a trade cleared at ``+4`` now at ``+1``), so by default
times are compared by their tick (``time // 300``) and the offset is reported but not counted; ``--exact``
counts it. Rows are compared as multisets (``harmony collect`` sorts by time, so rows of different phases of
one tick may change places); a different order is reported, not counted.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

TICK_S = 300
TIMING_TABLES = {"exchange", "payloads", "federate_stats"}


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    if not lines:
        return [], []
    reader = list(csv.reader(lines))
    return reader[0], reader[1:]


def compare_table(a: Path, b: Path, exact: bool) -> tuple[list[str], list[str]]:
    """(problems, notes) for one table present in both runs."""
    head_a, rows_a = _rows(a)
    head_b, rows_b = _rows(b)
    name = a.stem
    if head_a != head_b:
        return [f"{name}: columns differ: {head_a} vs {head_b}"], []
    notes: list[str] = []
    t = head_a.index("time") if "time" in head_a else None
    if rows_a == rows_b:
        return [], []
    if t is not None and not exact:
        def tick(rows):
            return [r[:t] + [str(int(float(r[t])) // TICK_S)] + r[t + 1:] for r in rows]
        if sorted(rows_a) != sorted(rows_b):
            notes.append(f"{name}: times differ inside the tick")
        rows_a, rows_b = tick(rows_a), tick(rows_b)
    if rows_a == rows_b:
        return [], notes
    ca, cb = Counter(map(tuple, rows_a)), Counter(map(tuple, rows_b))
    if ca == cb:
        return [], notes + [f"{name}: same rows in another order"]
    only_a, only_b = ca - cb, cb - ca
    problems = [f"{name}: {sum(only_a.values())} rows only in A, {sum(only_b.values())} only in B "
                f"(of {len(rows_a)} / {len(rows_b)})"]
    for label, only in (("A", only_a), ("B", only_b)):
        for row in list(only)[:3]:
            problems.append(f"  only in {label}: {dict(zip(head_a, row, strict=True))}")
    return problems, notes


def compare_runs(run_a: Path, run_b: Path, exact: bool = False) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    notes: list[str] = []
    tables_a = {p.stem for p in (run_a / "results").glob("*.csv")} - TIMING_TABLES
    tables_b = {p.stem for p in (run_b / "results").glob("*.csv")} - TIMING_TABLES
    if tables_a != tables_b:
        problems.append(f"tables differ: only in A {sorted(tables_a - tables_b)}, "
                        f"only in B {sorted(tables_b - tables_a)}")
    for name in sorted(tables_a & tables_b):
        p, n = compare_table(run_a / "results" / f"{name}.csv", run_b / "results" / f"{name}.csv", exact)
        problems += p
        notes += n
    kpis = [json.loads((r / "kpis.json").read_text()) if (r / "kpis.json").exists() else None for r in (run_a, run_b)]
    if kpis[0] is not None or kpis[1] is not None:
        ka, kb = ({k: v for k, v in (k or {}).items() if k != "wall_s"} for k in kpis)
        for key in sorted(set(ka) | set(kb)):
            if ka.get(key) != kb.get(key):
                problems.append(f"kpis.json {key}: {ka.get(key)!r} vs {kb.get(key)!r}")
    return problems, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--exact", action="store_true", help="also compare the second inside each tick")
    args = parser.parse_args(argv)
    problems, notes = compare_runs(args.run_a, args.run_b, args.exact)
    for line in notes:
        print("note:", line)
    for line in problems:
        print("DIFFERS:", line)
    print("same results" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
