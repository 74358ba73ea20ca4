import csv
import io

import pandas as pd
import pytest

from federates.common.recorder import Recorder
from federates.common.tables import TABLES
from federates.vpp.p2p_market import Order, Submission, screen_orders


def test_book_keeps_matched_energy_and_gate_rejections(tmp_path):
    subs = [Submission(Order("a:buy", "a", "buy", 2.0, 0.2), sender="fed_1", submitted_s=3),
            Submission(Order("b:sell", "b", "sell", 1.0, 0.1), sender="fed_1", submitted_s=3),
            Submission(Order("c:sell", "c", "sell", 1.0, 0.1), sender="fed_1", submitted_s=9)]  # late
    orders, rejected = screen_orders(subs, gate_s=3, hosts={"a": "fed_1", "b": "fed_1", "c": "fed_1"},
                                     price_floor_per_kwh=0.04, price_cap_per_kwh=0.3)
    rec = Recorder(tmp_path, "vpp_x")
    rec.book(time=4, slot=1, market="vpp_x", orders=orders, rejections=rejected, matched_kwh={"a:buy": 1.0})
    rec.flush()
    bids = pd.read_csv(tmp_path / "parts" / "vpp_x" / "bids.csv").set_index("participant")
    assert bids.loc["a", "accepted"] and bids.loc["a", "matched_kwh"] == pytest.approx(1.0)
    assert not bids.loc["b", "accepted"] and bids.loc["b", "matched_kwh"] == 0.0
    assert not bids.loc["c", "accepted"] and bids.loc["c", "reason"].startswith("late")


def test_rows_are_written_as_csv_dictwriter_writes_them(tmp_path):
    import csv
    import io

    from federates.common.tables import TABLES

    rows = [dict(amount=-0.1 + 0.2, energy_kwh=1e-17, item='say "hi", twice', participant="a,b", counterparty="c\nd",
                 time=300),
            dict(time=600.5, participant="é", counterparty="", item="x", energy_kwh=float("nan"), amount=None),
            dict(time=900, participant="t", counterparty="u", item="v", energy_kwh=True, amount=-0.0)]
    rec = Recorder(tmp_path, "vpp_x")
    for row in rows[:2]:
        rec.add("ledger", **row)
    rec.flush()
    rec.add("ledger", **rows[2])
    rec.flush()                                          # appended, one header
    want = io.StringIO(newline="")
    writer = csv.DictWriter(want, fieldnames=TABLES["ledger"])
    writer.writeheader()
    writer.writerows(rows)
    got = (tmp_path / "parts" / "vpp_x" / "ledger.csv").read_bytes()
    assert got == want.getvalue().encode()
    with pytest.raises(KeyError, match=r"missing \['amount'\], unexpected \['amuont'\]"):
        rec.add("ledger", **{k: v for k, v in rows[0].items() if k != "amount"}, amuont=1.0)
    with pytest.raises(KeyError):
        rec.add("no_such_table", a=1)

def test_rows_are_written_as_dictwriter_wrote_them(tmp_path):
    """add() and add_rows() write the bytes csv.DictWriter wrote for the same rows (header, quoting, floats, None)."""
    rows = [dict(time=0, feeder="f", prosumer="p1", v_pu=1.0408303045876373),
            dict(time=300.0, feeder='a "quoted", name', prosumer="p\n2", v_pu=None),
            dict(v_pu=True, prosumer="p3", time=600, feeder="f")]  # keywords in another order
    want = io.StringIO(newline="")
    writer = csv.DictWriter(want, fieldnames=TABLES["voltages"])
    writer.writeheader()
    writer.writerows(rows * 2)
    rec = Recorder(tmp_path, "feeder_x")
    rec.add("voltages", **rows[0])
    rec.add_rows("voltages", [tuple(r[c] for c in TABLES["voltages"]) for r in rows[1:]])
    rec.flush()
    rec.add_rows("voltages", [[r[c] for c in TABLES["voltages"]] for r in rows[:2]])
    rec.add("voltages", **rows[2])
    rec.flush()
    assert (tmp_path / "parts" / "feeder_x" / "voltages.csv").read_bytes() == want.getvalue().encode()


def test_add_rows_refuses_a_row_of_another_width(tmp_path):
    rec = Recorder(tmp_path, "feeder_x")
    with pytest.raises(ValueError, match="has 3 values, not one per column"):
        rec.add_rows("voltages", [(0, "f", "p1", 1.0), (0, "f", "p2")])
    with pytest.raises(KeyError, match="missing"):
        rec.add("voltages", time=0, feeder="f", prosumer="p1")
