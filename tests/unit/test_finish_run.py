"""runner.results.finish_run on hand-made run folders: what it leaves behind when the run settles, when its books do
not balance and when settling fails (the merged tables are written by a second thread in the meantime)."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from federates.common.config import Scenario
from federates.common.errors import SettlementError
from federates.common.tables import TABLES
from runner.results import collect, finish_run

SCENARIO = Scenario.model_validate({"name": "t", "start": "2024-06-21T00:00:00", "hours": 1, "mode": "topdown",
                                    "feeders": [{"name": "f", "master": "Master.dss"}]})


def write_part(run: Path, federate: str, table: str, rows: list[dict], columns=None) -> None:
    folder = run / "parts" / federate
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{table}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns or TABLES[table])
        writer.writeheader()
        writer.writerows(rows)


def run_folder(tmp_path: Path, ledger: list[dict]) -> Path:
    """A run of no prosumers: a recorded ledger, one exchange record, the federates' reports."""
    run = tmp_path / "run"
    write_part(run, "vpp_f", "ledger", ledger)
    write_part(run, "iso", "exchange",
               [{"time": 300, "federate": "iso", "action": "pub", "key": "a,b", "target": 1},
                {"time": 0, "federate": "iso", "action": "sub", "key": 'say "x"', "target": ""}])
    write_part(run, "iso", "federate_stats", [{"time": 3600, "federate": "iso", "kind": "iso", "steps": 12,
                                               "wall_s": 1.5, "helics_wait_s": 0.5, "compute_s": 1.0,
                                               "fallbacks": 0}])
    return run


def test_a_balanced_run_gets_every_table_as_collect_writes_it_its_parquet_and_kpis(tmp_path):
    paid = [{"time": 0, "participant": "a", "counterparty": "b", "item": "p2p_purchase", "energy_kwh": 1.0,
             "amount": -0.2},
            {"time": 0, "participant": "b", "counterparty": "a", "item": "p2p_sale", "energy_kwh": 1.0,
             "amount": 0.2}]
    run = run_folder(tmp_path, paid)
    figures = finish_run(SCENARIO, run)
    assert figures["money_balance_residual"] == 0.0 and (run / "kpis.json").is_file()
    written = {p.name: p.read_bytes() for p in (run / "results").glob("*.csv") if p.stem != "prosumer_kpis"}
    (run / "results").rename(tmp_path / "finished")
    collect(run)  # no prosumers: the settled ledger is the recorded one
    assert written == {p.name: p.read_bytes() for p in (run / "results").glob("*.csv")}
    assert sorted(p.stem for p in (tmp_path / "finished").glob("*.parquet")) == sorted([*TABLES, "prosumer_kpis"])
    exchange = pd.read_parquet(tmp_path / "finished" / "exchange.parquet")
    assert exchange["key"].tolist() == ['say "x"', "a,b"] and exchange["time_s"].tolist() == [0, 300]


def test_books_that_do_not_balance_leave_the_tables_but_no_parquet_and_no_kpis(tmp_path):
    run = run_folder(tmp_path, [{"time": 0, "participant": "a", "counterparty": "b", "item": "p2p_purchase",
                                 "energy_kwh": 1.0, "amount": -0.2}])
    with pytest.raises(SettlementError, match="money_balance_residual"):
        finish_run(SCENARIO, run)
    assert sorted(p.stem for p in (run / "results").glob("*.csv")) == sorted([*TABLES, "prosumer_kpis"])
    assert not list((run / "results").glob("*.parquet")) and not (run / "kpis.json").exists()


def test_a_settlement_that_fails_leaves_every_merged_table_and_the_recorded_ledger(tmp_path):
    run = run_folder(tmp_path, [{"time": 0, "participant": "a", "counterparty": "b", "item": "p2p_purchase",
                                 "energy_kwh": 1.0, "amount": -0.2}])
    # prosumer_steps without its battery records: settling cannot value the batteries
    write_part(run, "prosumers_f_0", "prosumer_steps", [{"time": 0, "prosumer": "p", "feeder": "f"}],
               columns=["time", "prosumer", "feeder"])
    with pytest.raises(KeyError):
        finish_run(SCENARIO, run)
    written = {p.name: p.read_bytes() for p in (run / "results").glob("*.csv")}
    (run / "results").rename(tmp_path / "failed")
    collect(run)
    assert written == {p.name: p.read_bytes() for p in (run / "results").glob("*.csv")}
    assert not (run / "kpis.json").exists()
