"""The on-disk series cache: round trip, checks, atomic builds and concurrent builders."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pgti_core.data import cache
from pgti_core.data.cache import (
    Built,
    CacheError,
    ValuesWriter,
    cache_root,
    load_entry,
    load_or_build,
    sha256_file,
)

SHAPE = (50, 4, 2)
EDGES = np.array([[0, 1, 2, 3], [1, 2, 3, 0]])


def _values() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)


class Builder:
    """Fills the array in two chunks and counts its calls."""

    def __init__(self, fail: bool = False):
        self.calls, self.fail = 0, fail

    def __call__(self, out: ValuesWriter) -> Built:
        self.calls += 1
        out[:25] = _values()[:25]
        if self.fail:
            raise RuntimeError("killed mid-build")
        out[25:] = _values()[25:]
        stamps = np.datetime64("2020-01-01T00:00") + np.arange(SHAPE[0]) * np.timedelta64(5, "m")
        return Built(EDGES, np.full(4, 0.5), "toy", stamps, {"profile": "toy", "seed": 7})


def test_round_trip_is_a_read_only_memmap_built_once(tmp_path):
    build = Builder()
    s = load_or_build("toy", SHAPE, build, cache_dir=tmp_path)
    again = load_or_build("toy", SHAPE, build, cache_dir=tmp_path)
    assert build.calls == 1
    for series in (s, again):
        assert isinstance(series.values, np.memmap) and not series.values.flags.writeable
        assert np.array_equal(series.values, _values())
        assert np.array_equal(series.edge_index, EDGES) and series.edge_weight.dtype == np.float32
        assert series.timestamps[1] - series.timestamps[0] == np.timedelta64(5, "m")
        assert series.name == "toy"
    meta = json.loads((tmp_path / "toy" / "meta.json").read_text())
    assert meta["shape"] == list(SHAPE) and meta["dtype"] == "float32"
    assert meta["sha256"] == sha256_file(tmp_path / "toy" / "values.npy")
    assert meta["seed"] == 7 and meta["profile"] == "toy" and "created_utc" in meta
    assert s.meta["cache_path"] == str(tmp_path / "toy")
    assert not (tmp_path / ".staging").exists()  # no empty staging folders left


def test_verify_catches_corruption_and_the_entry_is_rebuilt(tmp_path):
    build = Builder()
    load_or_build("toy", SHAPE, build, cache_dir=tmp_path)
    path = tmp_path / "toy" / "values.npy"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    load_entry(tmp_path / "toy")  # shape and dtype still agree: the fast check passes
    with pytest.raises(CacheError, match="sha256"):
        load_entry(tmp_path / "toy", verify=True)
    with pytest.warns(UserWarning, match="rebuilding"):
        s = load_or_build("toy", SHAPE, build, cache_dir=tmp_path, verify=True)
    assert build.calls == 2 and np.array_equal(s.values, _values())


def test_shape_disagreeing_with_meta_is_rejected_on_every_load(tmp_path):
    build = Builder()
    load_or_build("toy", SHAPE, build, cache_dir=tmp_path)
    meta_path = tmp_path / "toy" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "shape": [50, 4, 3]}))
    with pytest.raises(CacheError, match="meta.json says"):
        load_entry(tmp_path / "toy")
    with pytest.warns(UserWarning, match="rebuilding"):
        load_or_build("toy", SHAPE, build, cache_dir=tmp_path)
    assert build.calls == 2
    with pytest.raises(CacheError, match="unreadable"):
        load_entry(tmp_path / "missing")


def test_a_failed_build_leaves_no_entry_and_leftovers_are_cleaned(tmp_path):
    with pytest.raises(RuntimeError, match="killed"):
        load_or_build("toy", SHAPE, Builder(fail=True), cache_dir=tmp_path)
    assert not (tmp_path / "toy").exists()
    staging = tmp_path / ".staging" / "toy"
    assert not staging.exists()  # a failed build leaves nothing behind
    (staging / "tmpkilled").mkdir(parents=True)  # what a SIGKILLed build leaves
    (staging / "tmpkilled" / "values.npy").write_bytes(b"partial")
    load_or_build("toy", SHAPE, Builder(), cache_dir=tmp_path)
    assert not staging.exists()


def test_losing_a_rename_race_keeps_the_winner(tmp_path, monkeypatch):
    """Without a working lock (no fcntl) a builder that finishes second keeps the first entry."""
    monkeypatch.setattr(cache, "fcntl", None)
    inner = Builder()

    def outer(out: ValuesWriter) -> Built:
        load_or_build("toy", SHAPE, inner, cache_dir=tmp_path)  # a rival finishes first
        out[:] = -_values()
        return Built(EDGES, np.ones(4), "loser")

    s = load_or_build("toy", SHAPE, outer, cache_dir=tmp_path)
    assert inner.calls == 1 and s.name == "toy" and np.array_equal(s.values, _values())


def test_values_writer_is_a_valid_npy_written_in_step_order(tmp_path):
    with ValuesWriter(tmp_path / "v.npy", SHAPE) as out:
        out[0:10] = _values()[:10]
        with pytest.raises(ValueError, match="from 10"):
            out[20:30] = _values()[20:30]  # a gap
        with pytest.raises(ValueError, match="from 10"):
            out[10:20] = _values()[10:20, :3]  # wrong width
        out[10:] = _values()[10:]
        with pytest.raises(ValueError, match="past step"):
            out[50:51] = _values()[:1]
    assert out.sha256() == sha256_file(tmp_path / "v.npy")
    assert np.array_equal(np.load(tmp_path / "v.npy"), _values())
    with ValuesWriter(tmp_path / "w.npy", SHAPE) as short:
        short[:49] = _values()[:49]
    with pytest.raises(ValueError, match="49 of 50"):
        short.sha256()


def test_bad_keys_are_rejected(tmp_path):
    for key in ("", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="key"):
            load_or_build(key, SHAPE, Builder(), cache_dir=tmp_path)


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("PGTI_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "pgti"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "pgti"
    monkeypatch.setenv("PGTI_DATA_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"


RANK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from pgti_core.data.cache import Built, load_or_build

    root, go = sys.argv[1], sys.argv[2]
    open(os.path.join(root, f"ready-{os.getpid()}"), "w").close()
    while not os.path.exists(go):  # start together
        time.sleep(0.01)

    def build(out):
        with open(os.path.join(root, "builds.log"), "a") as log:
            log.write(f"{os.getpid()}\\n")
        time.sleep(0.5)
        out[:] = np.arange(240, dtype=np.float32).reshape(40, 3, 2)
        return Built(np.array([[0], [1]]), np.ones(1), "shared")

    s = load_or_build("shared", (40, 3, 2), build, cache_dir=root)
    print(s.meta["sha256"])
    """
)


@pytest.mark.slow
def test_concurrent_processes_build_one_entry(tmp_path):
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, str(tmp_path), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    go.touch()
    outs = [r.communicate(timeout=120) for r in ranks]
    assert [r.returncode for r in ranks] == [0, 0], [err for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1
    assert len((tmp_path / "builds.log").read_text().split()) == 1
    s = load_entry(tmp_path / "shared", verify=True)
    assert np.array_equal(s.values.ravel(), np.arange(240, dtype=np.float32))
    assert not (tmp_path / ".staging" / "shared").exists()
