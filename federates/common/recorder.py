"""Append-only CSV recording of result rows, safe against crashes.

Rows are buffered and appended to ``RUN/parts/<federate>/<table>.csv`` on :meth:`Recorder.flush`, which the
shells call every simulated half hour and on exit (also after a failure), so what was recorded before a crash
stays readable.
"""

from __future__ import annotations

import csv
from pathlib import Path

from federates.common.tables import TABLES


class Recorder:
    def __init__(self, out_dir: Path, federate: str):
        self.dir = Path(out_dir) / "parts" / federate
        self.dir.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, list[dict]] = {}

    def add(self, table: str, **row) -> None:
        """Buffer one row; its keys must be exactly the table's declared columns."""
        columns = TABLES[table]
        if set(row) != set(columns):
            missing, extra = set(columns) - set(row), set(row) - set(columns)
            raise KeyError(f"row for table {table!r}: missing {sorted(missing)}, unexpected {sorted(extra)}")
        self._rows.setdefault(table, []).append(row)

    def flush(self) -> None:
        for table, rows in self._rows.items():
            if not rows:
                continue
            path = self.dir / f"{table}.csv"
            new = not path.exists()
            with path.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=TABLES[table])
                if new:
                    writer.writeheader()
                writer.writerows(rows)
            rows.clear()
