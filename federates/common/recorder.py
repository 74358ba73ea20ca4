"""Append-only CSV recording of result rows, safe against crashes.

Rows are buffered and appended to ``RUN/parts/<federate>/<table>.csv`` on :meth:`Recorder.flush`, which the
shells call every simulated half hour and on exit (also after a failure), so what was recorded before a crash
stays readable.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path

from federates.common.tables import TABLES

log = logging.getLogger(__name__)
_COLUMN_SETS = {table: frozenset(columns) for table, columns in TABLES.items()}
_ROW_VALUES = {table: itemgetter(*columns) for table, columns in TABLES.items()}  # every table has >= 2 columns


class Recorder:
    def __init__(self, out_dir: Path, federate: str):
        self.dir = Path(out_dir) / "parts" / federate
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.csv"):  # a re-run of the same federation starts its tables afresh
            stale.unlink()
        self._rows: dict[str, list[Sequence]] = {}  # per table, rows as values in its declared column order

    def add(self, table: str, **row) -> None:
        """Buffer one row; its keys must be exactly the table's declared columns."""
        if row.keys() != _COLUMN_SETS[table]:
            columns = TABLES[table]
            missing, extra = set(columns) - set(row), set(row) - set(columns)
            raise KeyError(f"row for table {table!r}: missing {sorted(missing)}, unexpected {sorted(extra)}")
        self._rows.setdefault(table, []).append(_ROW_VALUES[table](row))

    def add_rows(self, table: str, rows: list[Sequence]) -> None:
        """Buffer many rows at once (e.g. one per prosumer and step), each the values of the table's declared
        columns in their declared order (``TABLES[table]``); written as :meth:`add` writes the same rows."""
        width = len(TABLES[table])
        if any(len(r) != width for r in rows):
            bad = next(r for r in rows if len(r) != width)
            raise ValueError(f"row for table {table!r} has {len(bad)} values, not one per column {TABLES[table]}: "
                             f"{bad!r}")
        self._rows.setdefault(table, []).extend(rows)

    def book(self, *, time: float, slot: int, market: str, orders, rejections, matched_kwh) -> None:
        """Record a market's order book: the orders that reached the market (with the energy each matched)
        and those the gate rejected (with the reason, also logged). Orders and rejections are those of
        ``federates.vpp.p2p_market``."""
        for o in orders:
            matched = matched_kwh.get(o.order_id, 0.0)
            self.add("bids", time=time, slot=slot, market=market, participant=o.participant, side=o.side,
                     energy_kwh=o.energy_kwh, limit_price_per_kwh=o.limit_price_per_kwh, accepted=matched > 0,
                     matched_kwh=matched, reason="")
        for r in rejections:
            o = r.order
            log.warning("%s slot %d: rejected order %s of %s: %s", market, slot, o.order_id, o.participant, r.reason)
            self.add("bids", time=time, slot=slot, market=market, participant=o.participant, side=o.side,
                     energy_kwh=o.energy_kwh, limit_price_per_kwh=o.limit_price_per_kwh, accepted=False,
                     matched_kwh=0.0, reason=r.reason)

    def trade(self, *, time: float, slot: int, layer: int, market: str, buyer: str, seller: str,
              energy_kwh: float, price_per_kwh: float, fee_per_kwh: float = 0.0, item: str = "p2p") -> None:
        """Record a trade and its money (ledger amounts are + when the participant receives money): the buyer
        pays the seller price - fee and pays the fee to the network operator (an external party)."""
        self.add("trades", time=time, slot=slot, layer=layer, market=market, buyer=buyer, seller=seller,
                 energy_kwh=energy_kwh, price_per_kwh=price_per_kwh)
        to_seller = (price_per_kwh - fee_per_kwh) * energy_kwh
        self.add("ledger", time=time, participant=buyer, counterparty=seller, item=f"{item}_purchase",
                 energy_kwh=energy_kwh, amount=-to_seller)
        self.add("ledger", time=time, participant=seller, counterparty=buyer, item=f"{item}_sale",
                 energy_kwh=energy_kwh, amount=to_seller)
        if fee_per_kwh:
            self.add("ledger", time=time, participant=buyer, counterparty="network_operator",
                     item="network_fee", energy_kwh=energy_kwh, amount=-fee_per_kwh * energy_kwh)

    def flush(self) -> None:
        for table, rows in self._rows.items():
            if not rows:
                continue
            path = self.dir / f"{table}.csv"
            new = not path.exists()
            with path.open("a", newline="") as fh:  # the bytes of csv.DictWriter, without its per-row checks
                writer = csv.writer(fh)
                if new:
                    writer.writerow(TABLES[table])
                writer.writerows(rows)
            rows.clear()
