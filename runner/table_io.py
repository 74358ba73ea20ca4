"""Write results tables as CSV fast, byte for byte as ``DataFrame.to_csv(path, index=False)`` writes them.

pandas formats every float with NumPy (``astype(str)``: the shortest repr, as Python's ``repr``) and writes the
rows through the ``csv`` module, about 1 us a cell: most of the end of a large run. :func:`write_csv` builds
the same text column by column with Arrow compute kernels and writes it in one piece:

- float64: the shortest round-trip digits (Arrow's cast, the same shortest digits as ``repr``), kept where
  ``repr`` writes them the same way (fixed notation, ``1e-4 <= |x| < 1e16``, not integral; Arrow's text is
  checked to be in fixed notation); integral values as the integer and ``.0``; NaN as an empty field; every
  other value (``-0.0``, ``inf``, tiny or huge) by ``repr`` itself;
- int64 and the other NumPy integers as decimals, bool as ``True`` / ``False``;
- text (pandas ``str``) as is, missing as an empty field, quoted as the ``csv`` module quotes with pandas'
  dialect (QUOTE_MINIMAL, doubled quotes). Which characters make the ``csv`` module quote a field is asked of
  the module itself at import (:data:`QUOTED_CHARS`); if it answers with anything but plain or doubled-quote
  quoting, the fast path is off.

Any other column type (object, float32, nullable or categorical dtypes, datetimes), a frame with fewer than two
columns or no rows, or non-default options: ``DataFrame.to_csv`` itself. ``tests/unit/test_table_io.py``
compares the two on hand-made and random frames.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_DIALECT = {"lineterminator": os.linesep, "delimiter": ",", "quoting": csv.QUOTE_MINIMAL, "doublequote": True,
            "escapechar": None, "quotechar": '"'}  # what DataFrame.to_csv gives the csv module by default


def _csv_row(fields: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, **_DIALECT).writerow(fields)
    return buf.getvalue()


def _quoted_chars() -> frozenset[str] | None:
    """The characters that make the csv module quote a field (pandas' dialect), or None when it does anything
    else than write a field as is or quoted with its quotes doubled."""
    chars = set()
    for code in [*range(0, 128), 0x85, 0xA0, 0x2028, 0x2029]:
        c = chr(code)
        for field in (f"a{c}b", f"{c}ab", f"ab{c}"):
            try:
                line = _csv_row([field, "x"])
            except csv.Error:
                return None
            if line == f"{field},x{os.linesep}":
                continue
            if line == '"' + field.replace('"', '""') + f'",x{os.linesep}':
                chars.add(c)
                continue
            return None
    return frozenset(chars) if _csv_row(["", "x"]) == f",x{os.linesep}" else None


QUOTED_CHARS = _quoted_chars()
_LARGE = pa.large_string()


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, type=_LARGE)


_QUOTE_PATTERN = "[" + "".join(f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\x{{{ord(c):x}}}"
                               for c in sorted(QUOTED_CHARS or ())) + "]"


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """``df.to_csv(path, index=False)``, the same bytes, faster (module docstring)."""
    cells = _cells(df)
    if cells is None:
        df.to_csv(path, index=False)
        return
    rows = pc.binary_join_element_wise(*cells, _text(","))
    lines = pc.binary_join_element_wise(rows, _text(""), _text(os.linesep))  # each row and its line terminator
    offsets, data = lines.buffers()[1], lines.buffers()[2]
    start, end = np.frombuffer(offsets, dtype=np.int64)[[lines.offset, lines.offset + len(lines)]]
    with open(path, "wb") as fh:
        fh.write(_csv_row([str(c) for c in df.columns]).encode())
        fh.write(memoryview(data)[start:end])


def _cells(df: pd.DataFrame) -> list[pa.Array] | None:
    """Every column's CSV text (Arrow large_string, no nulls), or None when one needs pandas' writer."""
    if QUOTED_CHARS is None or len(df) == 0 or len(df.columns) < 2 or not df.columns.is_unique:
        return None
    if not all(isinstance(c, str) for c in df.columns):
        return None
    out = []
    for name in df.columns:
        cells = column_cells(df[name])
        if cells is None:
            return None
        out.append(cells)
    return out


def column_cells(col: pd.Series) -> pa.Array | None:
    """The CSV text of one column as pandas writes it, or None for a type this module leaves to pandas."""
    dtype = col.dtype
    if isinstance(dtype, np.dtype):
        values = col.to_numpy()
        if dtype == np.float64:
            return float_cells(values)
        if dtype.kind in "iu":
            return pc.cast(pa.array(values), _LARGE)
        if dtype.kind == "b":
            return pc.if_else(pa.array(values), _text("True"), _text("False"))
        return None
    if isinstance(dtype, pd.StringDtype):
        text = pa.array(col.array, type=_LARGE)
        return text_cells(text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text)
    return None


def float_cells(x: np.ndarray) -> pa.Array:
    """float64 values as NumPy's ``astype(str)`` (= ``repr``) writes them, NaN as an empty field."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    size = np.abs(x)
    integral = (x == np.trunc(x)) & (size < 1e16) & ~((x == 0) & np.signbit(x))  # NaN, inf: False
    fixed = ~integral & (size >= 1e-4) & (size < 1e16)  # where repr writes fixed notation; NaN: False
    sci = ~integral & ~fixed & (size > 0) & (size < np.inf)  # where repr writes d.ddde-XX or d.ddde+XX
    pieces = [(np.flatnonzero(integral), lambda v: pc.binary_join_element_wise(
                  pc.cast(pa.array(v.astype(np.int64)), _LARGE), _text(".0"), _text(""))),
              (np.flatnonzero(fixed), lambda v: _checked(_shortest(v), _FIXED)),
              (np.flatnonzero(sci), lambda v: _checked(_scientific(_shortest(v)), _SCIENTIFIC)),
              (np.flatnonzero(np.isnan(x)), lambda v: _repeat("", len(v))),
              (np.flatnonzero((x == 0) & np.signbit(x)), lambda v: _repeat("-0.0", len(v)))]
    at, texts = [], []
    for where, text in pieces:
        at.append(where)
        texts.append(text(x[where]))
    left = np.ones(len(x), dtype=bool)  # inf, and what Arrow did not write as repr does: repr itself
    for where, text in zip(at, texts, strict=True):
        left[where[pc.is_valid(text).to_numpy(zero_copy_only=False)]] = False
    at.append(np.flatnonzero(left))
    texts = [t.drop_null() for t in texts] + [pa.array([repr(v) for v in x[at[-1]].tolist()], type=_LARGE)]
    at = [where[~left[where]] for where in at[:-1]] + [at[-1]]
    order = np.empty(len(x), dtype=np.int64)  # position of each value's text in the concatenated pieces
    order[np.concatenate(at)] = np.arange(len(x))
    return pa.concat_arrays(texts).take(pa.array(order))


def _repeat(text: str, n: int) -> pa.Array:
    return pa.nulls(n, _LARGE).fill_null(_text(text))


_FIXED = r"^-?\d+\.\d+$"
_SCIENTIFIC = r"^-?[1-9](\.\d*[1-9])?e[+-]\d\d\d?$"


def _shortest(x: np.ndarray) -> pa.Array:
    """The shortest digits that read back as ``x`` (as repr's), in Arrow's notation."""
    return pc.cast(pa.array(x), _LARGE)


def _scientific(text: pa.Array) -> pa.Array:
    """Arrow's text of numbers below 1e-4 or from 1e16 in repr's notation: fixed ``0.0000ddd`` (Arrow writes
    1e-6 <= |x| < 1e-4 so) as ``d.dde-05``, and an exponent of at least two digits."""
    for zeros, exponent in (("0000", "e-05"), ("00000", "e-06")):
        text = pc.replace_substring_regex(text, rf"^(-?)0\.{zeros}([1-9])(\d+)$", rf"\1\2.\3{exponent}")
        text = pc.replace_substring_regex(text, rf"^(-?)0\.{zeros}([1-9])$", rf"\1\2{exponent}")
    return pc.replace_substring_regex(text, r"e([+-])(\d)$", r"e\10\2")  # RE2 \10: group 1, then a zero


def _checked(text: pa.Array, pattern: str) -> pa.Array:
    """``text`` with null where it does not match ``pattern`` (repr writes those)."""
    return pc.if_else(pc.match_substring_regex(text, pattern), text, pa.scalar(None, _LARGE))


def holds(text: pa.Array | pa.ChunkedArray, byte: bytes) -> bool:
    """Whether any string of ``text`` holds ``byte`` (its data buffers searched: memchr, not Arrow's kernel)."""
    chunks = text.chunks if isinstance(text, pa.ChunkedArray) else [text]
    return any(c.buffers()[2] is not None and byte in c.buffers()[2].to_pybytes() for c in chunks)


def text_cells(text: pa.Array) -> pa.Array:
    """Strings as the csv module writes them (quoted where it would), missing as an empty field."""
    text = pc.fill_null(text, _text(""))
    needs = pc.match_substring_regex(text, _QUOTE_PATTERN)
    if not pc.any(needs).as_py():
        return text
    quoted = pc.binary_join_element_wise(_text('"'), pc.replace_substring(text, '"', '""'), _text('"'), _text(""))
    return pc.if_else(needs, quoted, text)
