"""Readers of the real traffic files, in the layouts their projects publish.

- DCRNN (Li et al., ICLR 2018) METR-LA / PeMS-Bay: ``metr-la.h5`` / ``pems-bay.h5`` (a pandas
  DataFrame: index timestamps, columns sensor ids, values speed) and ``adj_mx.pkl`` /
  ``adj_mx_bay.pkl`` (pickled ``(sensor_ids, sensor_id_to_ind, adj_mx)``, Python 2, latin1).
- PGT-I (Ockerman et al., SC'25) PeMS: ``pems_cali_speed.h5`` + ``pems_cali_adj_mat.pkl`` (a
  pickled dense adjacency or the DCRNN triple).
- LargeST (Liu et al., NeurIPS 2023): ``<name>.h5`` (DataFrame, key ``t``) + ``ca_rn_adj.npy`` dense
  (``adj.npy`` accepted).

Features are speed and time of day as a fraction of the day, as DCRNN's
``generate_training_data.py`` builds them (``add_time_in_day=True``, no day of week). NaN readings
become 0, the missing-value code. Edges are the nonzero off-diagonal entries ``adj[i, j]`` as
``i -> j``; the diagonal is dropped (diffusion supports add the identity themselves). Pickles run
code when loaded: read only files you trust.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pgti_core.data.series import Series

_CHUNK_BYTES = 64 << 20


class DatasetFileError(ValueError):
    """A dataset file is missing, unreadable or inconsistent with its companion file."""


def dense_to_edges(adj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``i -> j`` of the finite nonzero off-diagonal entries of a dense ``[N, N]`` matrix."""
    adj = np.asarray(adj)
    mask = np.isfinite(adj) & (adj != 0)
    np.fill_diagonal(mask, False)
    src, dst = np.nonzero(mask)
    return np.stack([src, dst]).astype(np.int64), adj[src, dst].astype(np.float32)


@dataclass
class FileSource:
    """A real dataset located and checked, its table still on disk; rows are read in chunks.

    Args:
        name: dataset name (file stem).
        table: the ``.h5`` file.
        key: the DataFrame's key inside it.
        num_steps: rows (time steps).
        edge_index: ``[2, E]`` int64 from the adjacency.
        edge_weight: ``[E]`` float32.
        order: column permutation putting sensors in adjacency order (None: already in order).
        meta: provenance (format, file paths).
    """

    name: str
    table: Path
    key: str
    num_steps: int
    num_nodes: int
    edge_index: np.ndarray
    edge_weight: np.ndarray
    order: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.num_steps, self.num_nodes, 2)

    def fill(self, out) -> np.ndarray:
        """Write ``[speed, time of day]`` into ``out[T, N, 2]`` in step order; return timestamps.

        ``out`` is an array or a :class:`~pgti_core.data.cache.ValuesWriter`; rows are read in
        chunks, so memory stays bounded by the chunk (plus the output if it is in memory).
        """
        if tuple(out.shape) != self.shape:
            raise ValueError(f"out: expected shape {self.shape}, got {tuple(out.shape)}")
        rows = max(1, _CHUNK_BYTES // (8 * self.num_nodes))
        stamps = []
        with pd.HDFStore(self.table, mode="r") as store:
            for t0 in range(0, self.num_steps, rows):
                frame = store.select(self.key, start=t0, stop=min(t0 + rows, self.num_steps))
                index = _time_index(frame, self.table)
                block = np.empty((len(frame), self.num_nodes, 2), dtype=np.float32)
                speed = frame.to_numpy(dtype=np.float32, na_value=0.0)
                block[:, :, 0] = speed if self.order is None else speed[:, self.order]
                tod = (index - index.normalize()) / pd.Timedelta(days=1)
                block[:, :, 1] = np.asarray(tod, dtype=np.float32)[:, None]
                out[t0 : t0 + len(frame)] = block
                stamps.append(index.tz_localize(None).to_numpy(dtype="datetime64[ns]"))
        return np.concatenate(stamps)

    def to_series(self) -> Series:
        """Read the whole table into memory."""
        values = np.empty(self.shape, dtype=np.float32)
        timestamps = self.fill(values)
        return Series(
            values, self.edge_index, self.edge_weight, self.name, timestamps, dict(self.meta)
        )


def open_dcrnn(table: str | os.PathLike, adj: str | os.PathLike | None = None) -> FileSource:
    """DCRNN's METR-LA / PeMS-Bay. ``adj`` defaults to ``adj_mx.pkl`` (``adj_mx_bay.pkl`` for
    ``pems-bay*``) next to the table or in its ``sensor_graph/`` folder."""
    table = _expect(table, "the speed table (DCRNN's metr-la.h5 or pems-bay.h5)")
    if adj is None:
        adj_name = "adj_mx_bay.pkl" if table.stem.startswith("pems-bay") else "adj_mx.pkl"
        candidates = [table.parent / adj_name, table.parent / "sensor_graph" / adj_name]
        adj = next((c for c in candidates if c.is_file()), candidates[0])
    adj = _expect(adj, "DCRNN's adjacency pickle (sensor_ids, sensor_id_to_ind, adj_mx)")
    return _source("dcrnn", table, adj, *_read_pickle(adj))


def open_pems(directory: str | os.PathLike) -> FileSource:
    """PGT-I's PeMS: ``pems_cali_speed.h5`` and ``pems_cali_adj_mat.pkl`` in ``directory``."""
    directory = Path(directory)
    table = _expect(directory / "pems_cali_speed.h5", "PGT-I's PeMS speed table")
    adj = _expect(directory / "pems_cali_adj_mat.pkl", "PGT-I's PeMS adjacency pickle")
    return _source("pems", table, adj, *_read_pickle(adj))


def largest_adj(table: Path) -> Path:
    """LargeST's adjacency beside ``table``: ``<area>_rn_adj.npy`` as the release names it
    (``ca_his_2019.h5`` -> ``ca_rn_adj.npy``), else ``adj.npy``; the first when neither exists."""
    named = table.parent / f"{table.stem.split('_')[0]}_rn_adj.npy"
    plain = table.parent / "adj.npy"
    return plain if plain.is_file() and not named.is_file() else named


def open_largest(table: str | os.PathLike, adj: str | os.PathLike | None = None) -> FileSource:
    """LargeST: a ``.h5`` table and a dense ``[N, N]`` ``.npy`` (default :func:`largest_adj`)."""
    table = _expect(table, "the LargeST speed table (<name>.h5)")
    adj = _expect(adj if adj is not None else largest_adj(table), "the LargeST adjacency (.npy)")
    try:
        matrix = np.load(adj, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetFileError(f"adj: cannot read {adj} as a .npy array ({exc})") from exc
    return _source("largest", table, adj, None, matrix)


OPENERS = {"dcrnn": open_dcrnn, "pems": open_pems, "largest": open_largest}


def read_dcrnn(table: str | os.PathLike, adj: str | os.PathLike | None = None) -> Series:
    """DCRNN's METR-LA / PeMS-Bay as an in-memory Series (see :func:`open_dcrnn`)."""
    return open_dcrnn(table, adj).to_series()


def read_pems(directory: str | os.PathLike) -> Series:
    """PGT-I's PeMS as an in-memory Series (see :func:`open_pems`)."""
    return open_pems(directory).to_series()


def read_largest(table: str | os.PathLike, adj: str | os.PathLike | None = None) -> Series:
    """A LargeST table as an in-memory Series (see :func:`open_largest`)."""
    return open_largest(table, adj).to_series()


def _expect(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"missing file: expected {what} at {path}; place it there")
    return path


def _read_pickle(path: Path) -> tuple[list | None, np.ndarray]:
    """``(sensor_ids or None, dense adjacency)`` from a DCRNN triple or a bare matrix pickle."""
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except Exception as exc:  # unpickling raises anything
        raise DatasetFileError(f"adj: cannot unpickle {path} ({exc})") from exc
    if isinstance(obj, tuple | list) and len(obj) == 3:
        return [str(s) for s in obj[0]], np.asarray(obj[2])
    if isinstance(obj, np.ndarray):
        return None, obj
    raise DatasetFileError(
        f"adj: {path} holds a {type(obj).__name__}; expected a dense ndarray or the DCRNN triple "
        "(sensor_ids, sensor_id_to_ind, adj_mx)"
    )


def _source(
    fmt: str, table: Path, adj: Path, sensor_ids: list | None, matrix: np.ndarray
) -> FileSource:
    """Check the table against the adjacency and build the :class:`FileSource`."""
    key, num_steps, columns = _table_layout(table)
    n = len(columns)
    if matrix.ndim != 2 or matrix.shape != (n, n):
        raise DatasetFileError(
            f"adj: {adj} is {list(matrix.shape)} but {table} has {n} sensor columns; "
            f"expected [{n}, {n}]"
        )
    order = None
    if sensor_ids is not None:
        names = [str(c) for c in columns]
        if names != sensor_ids:
            position = {s: i for i, s in enumerate(names)}
            if sorted(position) != sorted(sensor_ids):
                raise DatasetFileError(
                    f"columns: the sensor ids of {table} do not match sensor_ids in {adj}"
                )
            order = np.array([position[s] for s in sensor_ids], dtype=np.int64)
    edge_index, edge_weight = dense_to_edges(matrix)
    meta = {"source": "file", "format": fmt, "table": str(table), "adj": str(adj)}
    return FileSource(table.stem, table, key, num_steps, n, edge_index, edge_weight, order, meta)


def _table_layout(table: Path) -> tuple[str, int, pd.Index]:
    """``(key, rows, columns)`` of the DataFrame in ``table`` without reading its values."""
    try:
        with pd.HDFStore(table, mode="r") as store:
            keys = store.keys()
            key = keys[0] if len(keys) == 1 else "/t" if "/t" in keys else None
            if key is None:
                raise DatasetFileError(
                    f"table: {table} holds {keys or 'no tables'}; expected one DataFrame (or key 't')"
                )
            storer = store.get_storer(key)
            rows = storer.nrows if storer.is_table else int(storer.shape[0])
            head = store.select(key, start=0, stop=1)
    except DatasetFileError:
        raise
    except Exception as exc:  # tables/pandas raise many types for a bad file
        raise DatasetFileError(f"table: cannot read {table} as a pandas HDF5 file ({exc})") from exc
    if not isinstance(head, pd.DataFrame) or head.shape[1] < 2:
        raise DatasetFileError(f"table: {table} must hold a DataFrame with one column per sensor")
    _time_index(head, table)
    return key, int(rows), head.columns


def _time_index(frame: pd.DataFrame, table: Path) -> pd.DatetimeIndex:
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DatasetFileError(
            f"index: {table} must be indexed by timestamps, got {type(frame.index).__name__}"
        )
    return frame.index
