"""runner.results.write_parquet from the frames just written is what reading the CSVs back gives, byte for byte."""

from __future__ import annotations

import shutil
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from runner.results import reads_back_as_itself, write_parquet
from runner.table_io import write_csv

START = datetime(2024, 6, 21)


def text(values) -> pd.Series:
    return pd.Series(pd.array(values, dtype="str"))


def clean_tables() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(11)
    n = 400
    x = rng.normal(size=n) * 10.0 ** rng.integers(-8, 8, n)
    x[::7], x[1::11], x[2::13], x[3::17] = np.nan, -0.0, np.inf, 0.0
    return {
        "prosumer_steps": pd.DataFrame({"time": np.arange(n) * 300, "prosumer": text([f"p{i % 9}" for i in range(n)]),
                                        "feeder": text(["a,b" if i % 2 else 'say "x"' for i in range(n)]),
                                        "pv_kw": x, "soc_kwh": np.full(n, np.nan), "layer": rng.integers(1, 4, n)}),
        "bids": pd.DataFrame({"time": np.arange(n) * 300.0, "accepted": rng.random(n) < 0.5,
                              "reason": text([None if i % 3 else "gate\nclosed" for i in range(n)]),
                              "energy_kwh": np.round(rng.random(n), 3)}),
        "placement": pd.DataFrame({"feeder": text(["f"] * 3), "bus": [650, 632, 671], "distance_km": [0.1, 0.25, 1.0]}),
    }


def tricky_tables() -> dict[str, pd.DataFrame]:
    """Frames that do not read back as themselves: the CSV is read back, as it always was."""
    return {
        "carriage": pd.DataFrame({"message": text(["one\rtwo", "x"]), "value": [1.0, 2.0]}),  # not quoted: 3 rows
        "numbers_as_text": pd.DataFrame({"time": [0, 300], "note": text(["1", "2"])}),
        "mixed": pd.DataFrame({"time": [0, 300], "value": [1.5, "x"]}),
        "nothing": pd.DataFrame({"time": pd.Series([], dtype=float), "value": pd.Series([], dtype=float)}),
        "small_ints": pd.DataFrame({"time": [0, 300], "steps": np.array([1, 2], dtype=np.int32)}),
        "empty_text": pd.DataFrame({"time": [0, 300], "note": text(["", "x"])}),  # "" reads back as missing
        "no_name": pd.DataFrame({"time": [0, 300], "": [1.0, 2.0]}),                # read back as "Unnamed: 1"
        "name_with_cr": pd.DataFrame({"a\rb": [1.0, 2.0], "c": [3.0, 4.0]}),        # a header of two lines
    }


def parquet_bytes(tmp_path, name: str, tables: dict[str, pd.DataFrame], use_frames: bool) -> dict[str, bytes]:
    run = tmp_path / name
    (run / "results").mkdir(parents=True)
    for table, df in tables.items():
        write_csv(df, run / "results" / f"{table}.csv")
    write_parquet(run, START, "America/Chicago", frames=tables if use_frames else None)
    out = {p.stem: p.read_bytes() for p in sorted((run / "results").glob("*.parquet"))}
    shutil.rmtree(run)
    return out


def test_clean_frames_are_used_as_they_are_and_give_the_parquet_of_their_csv(tmp_path):
    tables = clean_tables()
    assert all(reads_back_as_itself(df) for df in tables.values())
    assert parquet_bytes(tmp_path, "frames", tables, True) == parquet_bytes(tmp_path, "csv", tables, False)


@pytest.mark.parametrize("table", sorted(tricky_tables()))
def test_frames_that_do_not_read_back_as_themselves_are_read_back(table, tmp_path):
    tables = {table: tricky_tables()[table]}
    assert parquet_bytes(tmp_path, "frames", tables, True) == parquet_bytes(tmp_path, "csv", tables, False)
    assert not reads_back_as_itself(tables[table])
