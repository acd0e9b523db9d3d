"""Small real-format dataset files, good and bad, for the bad-input corpus and the cache tests.

:func:`write_dcrnn` writes DCRNN's layout (``metr-la.h5`` DataFrame + ``adj_mx.pkl`` triple) with
one defect chosen by name, so each test says which problem it feeds a command.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

T, N = 400, 6
IDS = [str(717000 + 11 * i) for i in range(N)]

DEFECTS = (
    "good",
    "all-nan",
    "all-zero",
    "constant",
    "no-edges",
    "unsorted",
    "duplicate-times",
    "text-column",
    "no-timestamps",
    "one-column",
    "garbage-table",
    "garbage-adj",
    "adj-shape",
    "adj-text",
    "missing-adj",
    "two-tables",
)


def _frame(defect: str) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    values = rng.uniform(20, 70, (T, N))
    values[rng.random(values.shape) < 0.05] = 0.0
    index = pd.date_range("2012-03-01 06:30", periods=T, freq="5min")
    if defect == "all-nan":
        values[:] = np.nan
    elif defect == "all-zero":
        values[:] = 0.0
    elif defect == "constant":
        values[:] = 55.0
    elif defect == "unsorted":
        index = index[::-1]
    elif defect == "duplicate-times":
        index = index.insert(200, index[199])[:T]
    frame = pd.DataFrame(values, index=index, columns=IDS)
    if defect == "text-column":
        frame[IDS[2]] = "n/a"
    if defect == "no-timestamps":
        frame = frame.reset_index(drop=True)
    if defect == "one-column":
        frame = frame[[IDS[0]]]
    return frame


def _adj(defect: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    adj = np.where(rng.random((N, N)) < 0.4, rng.uniform(0.1, 1, (N, N)), 0.0).astype(np.float32)
    np.fill_diagonal(adj, 1.0)  # DCRNN's adj_mx has a unit diagonal
    if defect == "no-edges":
        adj = np.eye(N, dtype=np.float32)  # only self-loops: no edge between sensors
    if defect == "adj-shape":
        adj = adj[:-1, :-1]
    return adj


def write_dcrnn(folder: str | Path, defect: str = "good") -> Path:
    """Write ``folder/metr-la.h5`` and ``folder/adj_mx.pkl`` with ``defect``; return the table."""
    if defect not in DEFECTS:
        raise ValueError(f"defect: one of {', '.join(DEFECTS)}, got {defect!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "metr-la.h5"
    if defect == "garbage-table":
        table.write_bytes(b"not an HDF5 file\n" * 10)
    else:
        _frame(defect).to_hdf(table, key="df")
        if defect == "two-tables":
            _frame("good").to_hdf(table, key="other")
    adj = folder / "adj_mx.pkl"
    if defect == "garbage-adj":
        adj.write_bytes(b"\x80\x02garbage")
    elif defect != "missing-adj":
        matrix = _adj(defect)
        ids = IDS[: len(matrix)]
        if defect == "adj-text":
            matrix = np.array([["x"] * N] * N, dtype=object)
        with open(adj, "wb") as f:  # DCRNN's files are Python 2 pickles: protocol 2
            pickle.dump((ids, {s: i for i, s in enumerate(ids)}, matrix), f, protocol=2)
    return table
