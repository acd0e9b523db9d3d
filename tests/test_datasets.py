"""Dataset specs: parsing, labels, predicted shapes, and generate-once-then-memmap loading."""

import numpy as np
import pytest

from pgti_core.data.datasets import DatasetSpec, load_dataset, parse_dataset_spec
from pgti_core.data.formats import DatasetFileError
from pgti_core.data.synthetic import PROFILES, generate


@pytest.mark.parametrize(
    ("text", "label", "shape"),
    [
        ("metr-la", "metr-la", (34272, 207, 2)),
        ("pems", "pems", (105120, 11160, 2)),
        ("chickenpox", "chickenpox", (522, 20, 1)),
        (" metr-la:nodes=50,steps=2000 ", "metr-la:nodes=50,steps=2000", (2000, 50, 2)),
        ("metr-la:steps=2000,nodes=50", "metr-la:nodes=50,steps=2000", (2000, 50, 2)),
        ("windmill:nodes=40", "windmill:nodes=40", (17472, 40, 1)),
        ("pems-bay:nodes=325", "pems-bay", (52116, 325, 2)),  # the default is no override
    ],
)
def test_synthetic_specs(text, label, shape):
    spec = parse_dataset_spec(text)
    assert spec.label == label
    assert (spec.steps, spec.nodes, spec.features) == shape
    assert spec.nbytes == 4 * np.prod(shape)
    assert parse_dataset_spec(spec.text) == spec


def test_profile_defaults_through_the_spec():
    pox = parse_dataset_spec("chickenpox")
    assert (pox.window.lags, pox.window.horizon, pox.batch_size) == (4, 4, 4)
    wind = parse_dataset_spec("windmill")
    assert (wind.window.lags, wind.batch_size) == (8, 64)
    assert parse_dataset_spec("pems").profile is PROFILES["pems"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "unknown profile"),
        ("metr", "unknown profile"),
        ("metr-la:nodes", "key=value"),
        ("metr-la:nodes=", "key=value"),
        ("metr-la:seed=3", "unknown key 'seed'"),
        ("metr-la:nodes=5,nodes=6", "twice"),
        ("metr-la:nodes=ten", "nodes must be an integer"),
        ("metr-la:steps=1e4", "steps must be an integer"),
        ("metr-la:nodes=1", "nodes must be >= 2"),
        ("metr-la:steps=25", "too short"),
        ("metr-la:steps=0", "too short"),
        ("chickenpox:steps=8", "too short"),
        ("file:csv:/x.csv", "unknown file format"),
        ("file:dcrnn:", "missing path"),
        ("file:pems:/d,adj=/a.pkl", "unknown key 'adj'"),
    ],
)
def test_malformed_specs(text, match):
    with pytest.raises(ValueError, match=match):
        parse_dataset_spec(text)


def test_file_specs_parse_without_touching_files(tmp_path):
    spec = parse_dataset_spec(f"file:dcrnn:{tmp_path}/pems-bay.h5,adj={tmp_path}/a.pkl")
    assert spec == DatasetSpec("dcrnn", f"{tmp_path}/pems-bay.h5", adj=f"{tmp_path}/a.pkl")
    assert spec.label == "file:pems-bay" and spec.is_file
    assert spec.profile is PROFILES["pems-bay"] and spec.window.lags == 12
    assert parse_dataset_spec(spec.text) == spec
    assert parse_dataset_spec(f"file:pems:{tmp_path}").label == "file:pems_cali_speed"
    assert parse_dataset_spec(f"file:largest:{tmp_path}/ca.h5").profile is PROFILES["pems"]
    with pytest.raises(DatasetFileError, match="pems-bay.h5"):
        _ = spec.nodes  # the shape comes from the file, which is missing


def test_load_dataset_generates_once_then_memmaps(tmp_path):
    spec = "metr-la:nodes=20,steps=1500"
    s = load_dataset(spec, seed=4, cache_dir=tmp_path)
    assert isinstance(s.values, np.memmap) and not s.values.flags.writeable
    assert s.name == "metr-la:nodes=20,steps=1500"
    assert s.meta["seed"] == 4 and s.meta["overrides"] == {"nodes": 20, "steps": 1500}
    assert s.meta["generator_version"] >= 1
    direct = generate("metr-la", nodes=20, steps=1500, seed=4)
    assert s.values.tobytes() == direct.values.tobytes()
    assert np.array_equal(s.edge_index, direct.edge_index)
    assert np.array_equal(s.timestamps, direct.timestamps)
    mtime = (tmp_path / s.meta["key"] / "values.npy").stat().st_mtime_ns
    again = load_dataset(parse_dataset_spec(spec), seed=4, cache_dir=tmp_path, verify=True)
    assert (tmp_path / s.meta["key"] / "values.npy").stat().st_mtime_ns == mtime
    assert again.meta["sha256"] == s.meta["sha256"]
    other = load_dataset(spec, seed=5, cache_dir=tmp_path)
    assert other.meta["key"] != s.meta["key"]
    assert other.meta["sha256"] != s.meta["sha256"]


def test_load_dataset_uses_the_environment_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PGTI_DATA_DIR", str(tmp_path / "env"))
    s = load_dataset("chickenpox", seed=1)
    assert s.meta["cache_path"].startswith(str(tmp_path / "env"))
    with pytest.raises(ValueError, match="seed"):
        load_dataset("chickenpox", seed=-1)
