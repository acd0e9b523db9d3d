"""Cache verification: flipped bytes in ``values.npy`` are rebuilt (generated) or refused (real),
never trained on; a verified entry is not hashed again until its file changes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from data_files import write_dcrnn

from pgti_core.data import cache
from pgti_core.data.cache import CacheError
from pgti_core.data.datasets import load_dataset, parse_dataset_spec

SYNTHETIC = "metr-la:nodes=8,steps=600"


def _flip(path, offset: int = -64) -> None:
    """Overwrite bytes in place, as a bad disk or a stray write would (size kept)."""
    with open(path, "r+b") as f:
        f.seek(offset, os.SEEK_END)
        block = bytearray(f.read(16))
        f.seek(offset, os.SEEK_END)
        f.write(bytes(b ^ 0xFF for b in block))


def _values_path(series):
    return os.path.join(series.meta["cache_path"], "values.npy")


@pytest.fixture
def hashes(monkeypatch):
    """Counts full checksum passes over a values file."""
    calls = []
    real = cache.sha256_file

    def counting(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(cache, "sha256_file", counting)
    return calls


def test_a_generated_entry_is_verified_once_then_trusted_until_it_changes(tmp_path, hashes):
    spec = parse_dataset_spec(SYNTHETIC)
    first = np.array(load_dataset(spec, cache_dir=tmp_path).values)
    assert hashes == []  # just written: its checksum was computed on the way
    load_dataset(spec, cache_dir=tmp_path)
    assert hashes == []  # the stamp matches: one stat, no hash
    stamp = next((tmp_path / ".verified").iterdir())
    stamp.unlink()  # as on another host sharing the cache
    load_dataset(spec, cache_dir=tmp_path)
    assert len(hashes) == 1
    load_dataset(spec, cache_dir=tmp_path)
    assert len(hashes) == 1
    # any write brings the check back: the damaged entry is rebuilt, with the same bytes
    _flip(_values_path(load_dataset(spec, cache_dir=tmp_path)))
    with pytest.warns(UserWarning, match="rebuilding"):
        again = load_dataset(spec, cache_dir=tmp_path)
    assert np.array_equal(again.values, first)


def test_a_damaged_conversion_of_a_real_file_is_refused_naming_it(tmp_path):
    table = write_dcrnn(tmp_path / "data")
    spec = parse_dataset_spec(f"file:dcrnn:{table}")
    path = _values_path(load_dataset(spec, cache_dir=tmp_path / "cache"))
    _flip(path)
    with pytest.raises(CacheError, match=f"does not match its sha256.*{table}"):
        load_dataset(spec, cache_dir=tmp_path / "cache")
    assert os.path.exists(path)  # refused, not silently replaced


def test_a_damaged_real_entry_is_never_trained_on(tmp_path):
    """End to end, as in the issue: the train command stops with one line instead of training."""
    table = write_dcrnn(tmp_path / "data")
    spec = f"file:dcrnn:{table}"
    _flip(_values_path(load_dataset(parse_dataset_spec(spec), cache_dir=tmp_path / "cache")))
    metrics = tmp_path / "m.json"
    res = subprocess.run(
        [sys.executable, "-m", "pgti_core.train", "--dataset", spec, "--max-steps", "1",
         "--quiet", "--metrics-out", str(metrics)],
        env=dict(os.environ, PGTI_DATA_DIR=str(tmp_path / "cache"),
                 PYTHONPATH=os.pathsep.join(sys.path)),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert "sha256" in res.stderr and str(table) in res.stderr
    assert not metrics.exists()


def test_a_cache_that_cannot_be_stamped_is_verified_every_time(tmp_path, hashes, monkeypatch):
    spec = parse_dataset_spec(SYNTHETIC)
    load_dataset(spec, cache_dir=tmp_path)
    monkeypatch.setattr(cache, "_write_stamp", lambda *a: None)  # e.g. a read-only shared cache
    (tmp_path / ".verified").rename(tmp_path / "elsewhere")
    load_dataset(spec, cache_dir=tmp_path)
    load_dataset(spec, cache_dir=tmp_path)
    assert len(hashes) == 2
