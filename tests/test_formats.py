"""Readers of the real-file layouts, on small fixtures written in exactly those layouts."""

import pickle

import numpy as np
import pandas as pd
import pytest

from pgti_core.data import formats
from pgti_core.data.datasets import load_dataset
from pgti_core.data.formats import (
    DatasetFileError,
    dense_to_edges,
    open_dcrnn,
    read_dcrnn,
    read_largest,
    read_pems,
)

T, N = 300, 6
IDS = [str(717000 + 11 * i) for i in range(N)]


def _frame(start="2012-03-01 06:30", columns=IDS, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.uniform(20, 70, (T, len(columns)))
    values[rng.random(values.shape) < 0.05] = 0.0
    index = pd.date_range(start, periods=T, freq="5min")
    return pd.DataFrame(values, index=index, columns=columns)


def _adj(n=N) -> np.ndarray:
    rng = np.random.default_rng(1)
    adj = np.where(rng.random((n, n)) < 0.4, rng.uniform(0.1, 1, (n, n)), 0.0).astype(np.float32)
    np.fill_diagonal(adj, 1.0)  # DCRNN's adj_mx has a unit diagonal
    return adj


def _dcrnn_pickle(path, ids, adj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # DCRNN's files are Python 2 pickles: protocol 2
        pickle.dump((ids, {s: i for i, s in enumerate(ids)}, adj), f, protocol=2)


def _check(series, frame, adj):
    want = frame.to_numpy(dtype=np.float32)
    assert series.values.shape == (T, N, 2) and series.values.dtype == np.float32
    assert np.array_equal(series.values[..., 0], np.nan_to_num(want, nan=0.0))
    idx = frame.index
    tod = ((idx - idx.normalize()) / pd.Timedelta(days=1)).to_numpy()
    assert np.allclose(series.values[..., 1], tod[:, None], atol=1e-7)
    assert series.values[0, 0, 1] == pytest.approx(6.5 / 24)
    assert np.array_equal(series.timestamps, idx.to_numpy(dtype="datetime64[ns]"))
    src, dst = series.edge_index
    assert (src != dst).all()
    off = adj.copy()
    np.fill_diagonal(off, 0)
    assert len(src) == np.count_nonzero(off)
    assert np.array_equal(series.edge_weight, off[src, dst])


def test_dcrnn_metr_la_layout(tmp_path):
    frame, adj = _frame(), _adj()
    frame.iloc[3, 2] = np.nan  # NaN readings become 0 (missing)
    frame.to_hdf(tmp_path / "metr-la.h5", key="df")
    _dcrnn_pickle(tmp_path / "sensor_graph" / "adj_mx.pkl", IDS, adj)
    s = read_dcrnn(tmp_path / "metr-la.h5")
    _check(s, frame, adj)
    assert s.values[3, 2, 0] == 0.0
    assert s.name == "metr-la" and s.meta["format"] == "dcrnn"


def test_dcrnn_reorders_columns_to_the_adjacency_and_reads_in_chunks(tmp_path, monkeypatch):
    frame, adj = _frame(), _adj()
    shuffled = frame[IDS[::-1]]
    shuffled.to_hdf(tmp_path / "pems-bay.h5", key="df")
    _dcrnn_pickle(tmp_path / "adj_mx_bay.pkl", IDS, adj)
    monkeypatch.setattr(formats, "_CHUNK_BYTES", 8 * N * 7)  # 7 rows per read
    _check(read_dcrnn(tmp_path / "pems-bay.h5"), frame, adj)


def test_dcrnn_mismatched_sensor_ids_or_size(tmp_path):
    _frame().to_hdf(tmp_path / "metr-la.h5", key="df")
    _dcrnn_pickle(tmp_path / "adj_mx.pkl", [f"x{i}" for i in range(N)], _adj())
    with pytest.raises(DatasetFileError, match="sensor ids"):
        read_dcrnn(tmp_path / "metr-la.h5")
    _dcrnn_pickle(tmp_path / "other.pkl", IDS[:-1], _adj(N - 1))
    with pytest.raises(DatasetFileError, match=r"expected \[6, 6\]"):
        read_dcrnn(tmp_path / "metr-la.h5", adj=tmp_path / "other.pkl")


def test_missing_files_name_the_expected_path(tmp_path):
    with pytest.raises(DatasetFileError, match=str(tmp_path / "metr-la.h5")):
        read_dcrnn(tmp_path / "metr-la.h5")
    _frame().to_hdf(tmp_path / "metr-la.h5", key="df")
    with pytest.raises(DatasetFileError, match=str(tmp_path / "adj_mx.pkl")):
        read_dcrnn(tmp_path / "metr-la.h5")
    with pytest.raises(DatasetFileError, match="pems_cali_speed.h5"):
        read_pems(tmp_path)
    _frame().to_hdf(tmp_path / "ca_his_2019.h5", key="t")
    with pytest.raises(DatasetFileError, match=str(tmp_path / "ca_rn_adj.npy")):
        read_largest(tmp_path / "ca_his_2019.h5")
    assert issubclass(DatasetFileError, ValueError)


@pytest.mark.parametrize("triple", [False, True])
def test_pgti_pems_pair_with_matrix_or_triple(tmp_path, triple):
    frame, adj = _frame(start="2018-01-01 00:00"), _adj()
    frame.to_hdf(tmp_path / "pems_cali_speed.h5", key="speed")
    if triple:
        _dcrnn_pickle(tmp_path / "pems_cali_adj_mat.pkl", IDS, adj)
    else:
        with open(tmp_path / "pems_cali_adj_mat.pkl", "wb") as f:
            pickle.dump(adj, f)
    s = read_pems(tmp_path)
    assert s.values[0, 0, 1] == 0.0
    assert np.array_equal(s.values[..., 0], frame.to_numpy(dtype=np.float32))
    assert s.num_edges == np.count_nonzero(adj) - N


def test_pems_rejects_an_unexpected_pickle(tmp_path):
    _frame().to_hdf(tmp_path / "pems_cali_speed.h5", key="df")
    with open(tmp_path / "pems_cali_adj_mat.pkl", "wb") as f:
        pickle.dump({"adj": 1}, f)
    with pytest.raises(DatasetFileError, match="dense ndarray"):
        read_pems(tmp_path)


def test_largest_table_with_key_t(tmp_path):
    frame, adj = _frame(columns=[int(i) for i in IDS]), _adj()
    frame.to_hdf(tmp_path / "ca_his_2019.h5", key="t")
    frame.iloc[:5].to_hdf(tmp_path / "ca_his_2019.h5", key="extra")  # several keys: 't' wins
    np.save(tmp_path / "adj.npy", adj)
    _check(read_largest(tmp_path / "ca_his_2019.h5"), frame, adj)
    np.save(tmp_path / "small.npy", adj[:3, :3])
    with pytest.raises(DatasetFileError, match="6 sensor columns"):
        read_largest(tmp_path / "ca_his_2019.h5", adj=tmp_path / "small.npy")


def test_bad_tables(tmp_path):
    np.save(tmp_path / "adj.npy", _adj())
    frame = _frame().reset_index(drop=True)
    frame.to_hdf(tmp_path / "noindex.h5", key="t")
    with pytest.raises(DatasetFileError, match="timestamps"):
        read_largest(tmp_path / "noindex.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetFileError, match="cannot read"):
        read_largest(tmp_path / "junk.h5")


def test_dense_to_edges_drops_diagonal_and_zeros():
    adj = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.25], [0.75, 0.0, 1.0]])
    edge_index, weight = dense_to_edges(adj)
    assert edge_index.tolist() == [[0, 1, 2], [1, 2, 0]]
    assert weight.tolist() == [0.5, 0.25, 0.75] and weight.dtype == np.float32


def test_load_dataset_converts_a_file_into_the_cache_once(tmp_path):
    frame, adj = _frame(), _adj()
    frame.to_hdf(tmp_path / "metr-la.h5", key="df")
    _dcrnn_pickle(tmp_path / "adj_mx.pkl", IDS, adj)
    spec = f"file:dcrnn:{tmp_path / 'metr-la.h5'}"
    s = load_dataset(spec, cache_dir=tmp_path / "cache")
    assert isinstance(s.values, np.memmap) and s.name == "file:metr-la"
    _check(s, frame, adj)
    again = load_dataset(spec, cache_dir=tmp_path / "cache")
    assert again.meta["cache_path"] == s.meta["cache_path"]
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir() and p.name[0] != "."]) == 1
    assert open_dcrnn(tmp_path / "metr-la.h5").shape == (T, N, 2)


def test_largest_default_adjacency_is_the_release_name(tmp_path):
    frame, adj = _frame(columns=[int(i) for i in IDS]), _adj()
    frame.to_hdf(tmp_path / "ca_his_2019.h5", key="t")
    np.save(tmp_path / "adj.npy", adj[:3, :3])  # accepted only when ca_rn_adj.npy is absent
    np.save(tmp_path / "ca_rn_adj.npy", adj)
    _check(read_largest(tmp_path / "ca_his_2019.h5"), frame, adj)
    (tmp_path / "ca_rn_adj.npy").unlink()
    with pytest.raises(DatasetFileError, match="6 sensor columns"):
        read_largest(tmp_path / "ca_his_2019.h5")  # now adj.npy, the wrong size here
