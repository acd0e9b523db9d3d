"""Memory at its floor: explicit reads leave no file pages mapped, statistics are cached beside the
dataset, and a shared host copy gives the same batches as a private one (and is rebuilt when bad)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pgti_core.batching import WindowSpec, build_strategy, split_starts
from pgti_core.batching import host_copy as hc
from pgti_core.data import normalize
from pgti_core.data.datasets import load_dataset
from pgti_core.data.normalize import cached_train_window_stats, train_window_stats
from pgti_core.data.reader import file_backing, read_steps

SPEC = WindowSpec(12, 12)
DATASET = "metr-la:nodes=300,steps=9000"  # 21.6 MB: big enough to see pages, small to build


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    return load_dataset(DATASET, cache_dir=tmp_path_factory.mktemp("cache"))


def _file_resident() -> int:
    """File-backed resident bytes of this process (smaps_rollup: Rss - Anonymous)."""
    fields = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith(":"):
                fields[parts[0][:-1]] = int(parts[1]) * 1024
    return fields["Rss"] - fields["Anonymous"]


def test_read_steps_matches_slicing_and_is_file_backed(cached):
    assert file_backing(cached.values) is not None
    assert file_backing(cached.values[10:]) is None  # a view's offset is not the file's
    got = read_steps(cached.values, 123, 4567)
    assert np.array_equal(got, np.asarray(cached.values[123:4567]))
    out = np.empty((10, *cached.values.shape[1:]), np.float32)
    assert read_steps(cached.values, 0, 10, out) is out
    with pytest.raises(ValueError, match="out: expected"):
        read_steps(cached.values, 0, 11, out)


@pytest.mark.parametrize("strategy", ["index", "partitioned", "standard"])
def test_no_file_pages_left_after_the_build(tmp_path, strategy):
    series = load_dataset(DATASET, cache_dir=tmp_path)  # fresh mapping, nothing touched yet
    splits = split_starts(series.num_steps, SPEC)
    before = _file_resident()
    norm = cached_train_window_stats(series, SPEC, splits["train"])
    strategies = [
        build_strategy(strategy, series, SPEC, splits[s], norm, shuffle=s == "train")
        for s in ("train", "val", "test")
    ]
    grown = _file_resident() - before
    assert sum(s.resident_bytes()["host"] for s in strategies) >= 0.9 * series.nbytes
    assert grown < 0.05 * series.nbytes, f"{grown} file-backed bytes resident after the build"


def test_stats_are_cached_beside_the_dataset(cached, monkeypatch):
    starts = split_starts(cached.num_steps, SPEC)["train"]
    first = cached_train_window_stats(cached, SPEC, starts)
    assert first == train_window_stats(cached.values, SPEC, starts)
    files = list((Path(cached.meta["cache_path"]) / normalize.STATS_DIR).glob("*.json"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(normalize, "train_window_stats", boom)
    assert cached_train_window_stats(cached, SPEC, starts) == first
    other = WindowSpec(6, 6)  # another geometry is another file, computed once
    monkeypatch.undo()
    cached_train_window_stats(cached, other, split_starts(cached.num_steps, other)["train"])
    assert len(list(files[0].parent.glob("*.json"))) == 2


def _strategies(series, copy: str) -> dict:
    splits = split_starts(series.num_steps, SPEC)
    norm = cached_train_window_stats(series, SPEC, splits["train"])
    return {
        s: build_strategy("index", series, SPEC, splits[s], norm, host_copy=copy, batch_size=32)
        for s in ("train", "val")
    }


def test_shared_copy_batches_bit_identical_to_private(cached):
    private, shared = _strategies(cached, "private"), _strategies(cached, "shared")
    for split in private:
        assert shared[split].describe()["host_copy"] == "shared"
        for starts in private[split].plan()[:5] + private[split].plan()[-2:]:
            xa, ya = private[split].batch(starts)
            xb, yb = shared[split].batch(starts)
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def _copy_files(series) -> list[Path]:
    return sorted((Path(series.meta["cache_path"]) / hc.NORMALIZED_DIR).glob("*.npy"))


@pytest.mark.parametrize("damage", ["corrupt", "stale", "truncated"])
def test_bad_shared_copy_is_rebuilt(tmp_path, damage):
    series = load_dataset("metr-la:nodes=20,steps=3000", cache_dir=tmp_path)
    reference = _strategies(series, "private")["train"]
    _strategies(series, "shared")
    path = _copy_files(series)[0]
    meta_path = path.with_suffix(".json")
    if damage == "corrupt":
        with open(path, "r+b") as f:
            f.seek(-8, 2)
            f.write(b"\x00\x01\x02\x03\x04\x05\x06\x07")
    elif damage == "stale":
        meta = json.loads(meta_path.read_text())
        meta["source_sha256"] = "0" * 64
        meta_path.write_text(json.dumps(meta))
    else:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    rebuilt = _strategies(series, "shared")["train"]
    assert json.loads(meta_path.read_text())["source_sha256"] == series.meta["sha256"]
    starts = reference.plan()[-1]
    for a, b in zip(reference.batch(starts), rebuilt.batch(starts), strict=True):
        assert torch.equal(a, b)


def test_shared_copy_needs_a_cached_series(series):
    splits = split_starts(series.num_steps, SPEC)
    norm = train_window_stats(series.values, SPEC, splits["train"])
    with pytest.raises(ValueError, match="host_copy: 'shared' needs"):
        build_strategy("index", series, SPEC, splits["train"], norm, host_copy="shared")
    with pytest.raises(ValueError, match="host_copy: unknown"):
        build_strategy("index", series, SPEC, splits["train"], norm, host_copy="both")
