"""runner.table_io.write_csv writes the bytes DataFrame.to_csv(index=False) writes, for every column type."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runner import table_io
from runner.table_io import column_cells, float_cells, write_csv

EDGE_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 0.30000000000000004, 1234.5, -2.5e-7, 1e-4, 9.999999999999999e-05,
               1.0000000000000002e-4, 1e-5, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e15, 1e16,
               9999999999999998.0, 1e16 + 2, 2.0**53, 2.0**53 + 2, 123456789012345.6, 12345678901234.5,
               1234567890123.25, 99999999999999.98, 0.00012345678901234567, float("inf"), float("-inf"),
               float("nan"), -0.0001, -1e300, 3.0e-310]


def pandas_bytes(df: pd.DataFrame, tmp_path) -> bytes:
    path = tmp_path / "pandas.csv"
    df.to_csv(path, index=False)
    return path.read_bytes()


def fast_bytes(df: pd.DataFrame, tmp_path) -> bytes:
    path = tmp_path / "fast.csv"
    write_csv(df, path)
    return path.read_bytes()


def random_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Every notation repr uses: integral values, fixed and scientific, tiny, huge, NaN."""
    x = rng.normal(size=n) * 10.0 ** rng.integers(-22, 22, n)
    x[rng.random(n) < 0.2] = np.nan
    whole = rng.random(n) < 0.3
    x[whole] = np.round(rng.normal(size=whole.sum()) * 10.0 ** rng.integers(0, 17, whole.sum()))
    return x


def test_float_cells_are_numpys_text_for_edge_and_random_values():
    rng = np.random.default_rng(3)
    x = np.concatenate([EDGE_FLOATS, random_floats(rng, 200_000), rng.random(50_000).round(rng.integers(0, 17))])
    want = x.astype(str)
    want[np.isnan(x)] = ""
    assert float_cells(x).to_pylist() == want.tolist()


def test_a_frame_of_every_supported_type_is_written_as_pandas_writes_it(tmp_path):
    rng = np.random.default_rng(7)
    n = 5_000
    texts = np.array(["a", "a,b", 'say "hi"', "two\nlines", "cr\rhere", "", "é ü", " lead", "tab\tx", "x" * 50,
                      '"', ",", "1.5", "True"], dtype=object)
    df = pd.DataFrame({
        "time": rng.integers(0, 86_400, n),
        "name": pd.array(texts[rng.integers(0, len(texts), n)], dtype="str"),
        "x": random_floats(rng, n),
        "flag": rng.random(n) < 0.5,
        "u": rng.integers(0, 2**40, n).astype(np.uint64),
        "small": rng.integers(-5, 5, n).astype(np.int8),
    })
    df.loc[rng.random(n) < 0.1, "name"] = np.nan
    assert column_cells(df["name"]) is not None  # the fast path, not pandas' own writer
    assert fast_bytes(df, tmp_path) == pandas_bytes(df, tmp_path)


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"a": [1.5, None], "b": ["x", 2]}),                       # object column: pandas writes it
    pd.DataFrame({"a": np.array([0.1, 1e-7], dtype=np.float32), "b": [1, 2]}),
    pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": [1.0, 2.0]}),
    pd.DataFrame({"a": pd.Categorical(["x", "y"]), "b": [1.0, 2.0]}),
    pd.DataFrame({"a": pd.to_datetime(["2024-06-21", "2024-06-22"]), "b": [1.0, 2.0]}),
    pd.DataFrame({"a": [True, None], "b": [0.0, -0.0]}),
    pd.DataFrame({"only": ["", "x", None]}),                                # one column: an empty field is ""
    pd.DataFrame(columns=["a", "b"]),
    pd.DataFrame({"a": [], "b": []}),
    pd.DataFrame({"a": [1.0, 2.0], "b": ["x,y", None]}),
])
def test_other_frames_are_written_as_pandas_writes_them(frame, tmp_path):
    assert fast_bytes(frame, tmp_path) == pandas_bytes(frame, tmp_path)


def test_the_csv_modules_quoting_is_read_from_the_module():
    assert table_io.QUOTED_CHARS is not None
    assert {",", '"', "\n"} <= table_io.QUOTED_CHARS
