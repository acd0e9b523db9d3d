"""The bad-input corpus: what a new user gets wrong with each of the six commands and the data
paths. Every case must end with the expected exit status, exactly one line on stderr, no
traceback, and nothing new in the working directory, the output location or the cache.

Cases run in-process (``main(argv)``), in a fresh working directory that is also the cache
(``$PGTI_DATA_DIR``); ``{tmp}`` in an argument is that directory. A setup name prepares what the
case needs (a FIFO, a bad CSV, a dataset file with one defect, ...; ``a+b`` runs both) before
the snapshot.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from data_files import DEFECTS, write_dcrnn

from bench.jobs import submit
from bench.perf import calibrate
from bench.report import figures, plot
from bench.sweep import driver
from bench.sweep.results import HEADER
from pgti_core.data.datasets import load_dataset, parse_dataset_spec
from pgti_core.train import __main__ as train

MAINS = {
    "run": driver.main,
    "plot": plot.main,
    "figures": figures.main,
    "calibrate": calibrate.main,
    "submit": submit.main,
    "train": train.main,
}
CUDA = torch.cuda.is_available()
DCRNN = "file:dcrnn:{tmp}/data/metr-la.h5"


def _fifo(tmp: Path, name: str) -> None:
    os.mkfifo(tmp / name)


def _corrupt_cached(tmp: Path) -> None:
    """A real file converted into the cache, then a block of its values overwritten."""
    table = write_dcrnn(tmp / "data")
    series = load_dataset(parse_dataset_spec(f"file:dcrnn:{table}"), cache_dir=tmp)
    path = Path(series.meta["cache_path"]) / "values.npy"
    del series
    with open(path, "r+b") as f:
        f.seek(-4096, os.SEEK_END)
        f.write(np.full(1024, 999.0, dtype=np.float32).tobytes())


SETUPS = {
    "fifo-out": lambda t: _fifo(t, "out.csv"),
    "fifo-json": lambda t: _fifo(t, "out.json"),
    "dir": lambda t: (t / "adir").mkdir(),
    "file": lambda t: (t / "afile").write_text("x\n"),
    "garbage-json": lambda t: (t / "cal.json").write_text("{not json"),
    "list-json": lambda t: (t / "cal.json").write_text("[1, 2]"),
    "nan-json": lambda t: (t / "cal.json").write_text('{"alpha_s": NaN, "beta_Bps": 1e9}'),
    "empty-json": lambda t: (t / "cal.json").write_text("{}"),
    "default-cal": lambda t: (t / "out").mkdir() or (t / "out/calibration.json").write_text("{x"),
    "sched-garbage": lambda t: (t / "sched.json").write_text("garbage"),
    "sched-noaddr": lambda t: (t / "sched.json").write_text('{"id": 1}'),
    "foreign-csv": lambda t: (t / "r.csv").write_text("a,b,c\n1,2,3\n"),
    "results-csv": lambda t: (t / "r.csv").write_text(HEADER),
    "binary-csv": lambda t: (t / "r.csv").write_bytes(b"\xff\xfe\x00garbage\x00" * 50),
    "empty-csv": lambda t: (t / "r.csv").write_text(""),
    "corrupt-cache": _corrupt_cached,
}
SETUPS.update(
    {f"dcrnn-{d}": functools.partial(lambda d, t: write_dcrnn(t / "data", d), d) for d in DEFECTS}
)

# (command, argv, setup or None, exit status, text the one stderr line must hold)
RUN = ["--gpus", "1", "--strategies", "index", "--out", "{tmp}/out/r.csv", "--quiet"]
TRAIN = ["--epochs", "1", "--max-steps", "1", "--quiet", "--dataset"]
CASES = [
    # --- bench.run: numbers, names, combinations, plan bounds ---
    ("run", ["--seed", "-1"], None, 2, "--seed"),
    ("run", ["--seed", "1.5"], None, 2, "integer"),
    ("run", ["--repeats", "100000000", "--dry-run"], None, 2, "--repeats"),
    ("run", ["--repeats", "0"], None, 2, "--repeats"),
    ("run", ["--repeats", "5000", "--gpus", "1,2,4,8,16,32,64", "--dry-run"], None, 2, "points"),
    ("run", ["--gpus", "0"], None, 2, "--gpus"),
    ("run", ["--gpus", "-4"], None, 2, "--gpus"),
    ("run", ["--gpus", "1,x"], None, 2, "integers"),
    ("run", ["--gpus", "2,2"], None, 2, "repeated"),
    ("run", ["--gpus", "99999999999"], None, 2, "--gpus"),
    ("run", ["--gpus", ""], None, 2, "--gpus"),
    ("run", ["--epochs", "0"], None, 2, "--epochs"),
    ("run", ["--epochs", "nan"], None, 2, "--epochs"),
    ("run", ["--batch-size", "-1"], None, 2, "--batch-size"),
    ("run", ["--max-steps", "0"], None, 2, "--max-steps"),
    ("run", ["--timeout", "0"], None, 2, "--timeout"),
    ("run", ["--timeout", "inf"], None, 2, "finite"),
    ("run", ["--timeout", "nan"], None, 2, "finite"),
    ("run", ["--interval", "0"], None, 2, "--interval"),
    ("run", ["--interval", "1e9"], None, 2, "--interval"),
    ("run", ["--alpha", "nan", "--beta", "1e9"], None, 2, "finite"),
    ("run", ["--alpha", "-1", "--beta", "1e9"], None, 2, "--alpha"),
    ("run", ["--alpha", "1e-5"], None, 2, "--beta"),
    ("run", ["--alpha", "1e-5", "--beta", "0"], None, 2, "--beta"),
    ("run", ["--alpha", "1e-5", "--beta", "inf"], None, 2, "finite"),
    ("run", ["--threads-per-rank", "0"], None, 2, "--threads-per-rank"),
    ("run", ["--threads-per-rank", "100000"], None, 2, "--threads-per-rank"),
    ("run", ["--dask-workers", "0"], None, 2, "--dask-workers"),
    ("run", ["--max-local-ranks", "0"], None, 2, "--max-local-ranks"),
    ("run", ["--ranks-per-node", "0"], None, 2, "--ranks-per-node"),
    ("run", ["--strategies", "nope"], None, 2, "nope"),
    ("run", ["--strategies", "index,index"], None, 2, "twice"),
    ("run", ["--models", "gpt"], None, 2, "gpt"),
    ("run", ["--datasets", "nope"], None, 2, "unknown profile"),
    ("run", ["--datasets", ""], None, 2, "--datasets"),
    ("run", ["--datasets", "metr-la:nodes=1"], None, 2, "nodes"),
    ("run", ["--datasets", "metr-la:nodes=x"], None, 2, "integer"),
    ("run", ["--datasets", "metr-la:steps=10"], None, 2, "too short"),
    ("run", ["--datasets", "metr-la:colour=red"], None, 2, "unknown key"),
    ("run", ["--datasets", "metr-la,metr-la"], None, 2, "twice"),
    ("run", ["--datasets", "file:csv:x.csv"], None, 2, "file format"),
    ("run", ["--datasets", "file:dcrnn:"], None, 2, "missing path"),
    ("run", ["--backend", "mpi"], None, 2, "--backend"),
    ("run", ["--bogus"], None, 2, "unrecognized"),
    ("run", ["--calibration", "{tmp}/none.json"], None, 2, "bench.calibrate"),
    ("run", ["--calibration", "{tmp}/cal.json"], "garbage-json", 2, "not valid JSON"),
    ("run", ["--calibration", "{tmp}/cal.json"], "list-json", 2, "JSON object"),
    ("run", ["--calibration", "{tmp}/cal.json"], "nan-json", 2, "calibration"),
    ("run", ["--calibration", "{tmp}/cal.json"], "empty-json", 2, "alpha_s"),
    ("run", ["--gpus", "4096", *RUN[2:]], "default-cal", 2, "calibration"),
    ("run", ["--dask-scheduler-file", "{tmp}/none.json"], None, 2, "no file"),
    ("run", ["--dask-scheduler-file", "{tmp}/sched.json"], "sched-garbage", 2, "scheduler"),
    ("run", ["--dask-scheduler-file", "{tmp}/sched.json"], "sched-noaddr", 2, "address"),
    ("run", ["--dask-scheduler-file", "{tmp}/adir"], "dir", 2, "no file"),
    # --- bench.run: the output location ---
    ("run", ["--out", "{tmp}/out.csv"], "fifo-out", 2, "FIFO"),
    ("run", ["--out", "{tmp}/adir"], "dir", 2, "directory"),
    ("run", ["--out", "{tmp}/afile/r.csv"], "file", 2, "not a directory"),
    ("run", ["--out", "/proc/pgti/r.csv"], None, 2, "cannot create"),
    ("run", ["--out", "{tmp}/r.csv"], "foreign-csv", 2, "header"),
    # --- bench.run: real files (checked before any work, --dry-run too) ---
    ("run", ["--datasets", DCRNN, "--dry-run"], None, 2, "missing file"),
    ("run", ["--datasets", DCRNN, "--dry-run"], "dcrnn-garbage-table", 2, "HDF5"),
    ("run", ["--datasets", DCRNN, "--dry-run"], "dcrnn-garbage-adj", 2, "unpickle"),
    ("run", ["--datasets", DCRNN, "--dry-run"], "dcrnn-missing-adj", 2, "adj_mx.pkl"),
    ("run", ["--datasets", DCRNN, "--dry-run"], "dcrnn-adj-shape", 2, "expected [6, 6]"),
    ("run", ["--datasets", DCRNN, "--dry-run"], "dcrnn-no-edges", 2, "no edges"),
    ("run", ["--datasets", DCRNN, "--dry-run"], "dcrnn-text-column", 2, "non-numeric"),
    ("run", ["--datasets", DCRNN, *RUN], "dcrnn-all-nan", 1, "no readings"),
    ("run", ["--datasets", DCRNN, *RUN], "dcrnn-constant", 1, "constant"),
    ("run", ["--datasets", DCRNN, *RUN], "dcrnn-unsorted", 1, "do not increase"),
    ("run", ["--datasets", DCRNN, *RUN], "corrupt-cache", 1, "does not match its sha256"),
    # --- pgti_core.train ---
    ("train", ["--lags", "0"], None, 2, "--lags"),
    ("train", ["--horizon", "0"], None, 2, "--horizon"),
    ("train", ["--lags", "-3"], None, 2, "--lags"),
    ("train", ["--epochs", "0"], None, 2, "--epochs"),
    ("train", ["--batch-size", "0"], None, 2, "--batch-size"),
    ("train", ["--max-steps", "0"], None, 2, "--max-steps"),
    ("train", ["--lr", "0"], None, 2, "--lr"),
    ("train", ["--lr", "nan"], None, 2, "finite"),
    ("train", ["--lr", "-1e-3"], None, 2, "--lr"),
    ("train", ["--seed", "-1"], None, 2, "--seed"),
    ("train", ["--seed", "99999999999"], None, 2, "--seed"),
    ("train", ["--strategy", "nope"], None, 2, "--strategy"),
    ("train", ["--model", "nope"], None, 2, "--model"),
    ("train", ["--dataset", "nope"], None, 2, "unknown profile"),
    ("train", ["--dataset", "metr-la:steps=5"], None, 2, "too short"),
    ("train", ["--backend", "mpi"], None, 2, "--backend"),
    ("train", ["--metrics-out", "{tmp}/adir"], "dir", 2, "directory"),
    ("train", ["--metrics-out", "{tmp}/out.json"], "fifo-json", 2, "FIFO"),
    ("train", ["--metrics-out", "{tmp}/afile/m.json"], "file", 2, "not a directory"),
    ("train", ["--metrics-out", "/proc/pgti/m.json"], None, 2, "cannot create"),
    ("train", ["--dataset", DCRNN], None, 2, "missing file"),
    ("train", [*TRAIN, DCRNN], "dcrnn-no-timestamps", 2, "timestamps"),
    ("train", [*TRAIN, DCRNN], "dcrnn-one-column", 2, "one column per sensor"),
    ("train", [*TRAIN, DCRNN], "dcrnn-two-tables", 2, "one DataFrame"),
    ("train", [*TRAIN, DCRNN], "dcrnn-adj-text", 2, "numeric matrix"),
    ("train", [*TRAIN, DCRNN], "dcrnn-all-nan", 1, "no readings"),
    ("train", [*TRAIN, DCRNN], "dcrnn-all-zero", 1, "no readings"),
    ("train", [*TRAIN, DCRNN], "dcrnn-constant", 1, "constant"),
    ("train", [*TRAIN, DCRNN], "dcrnn-duplicate-times", 1, "do not increase"),
    ("train", [*TRAIN, DCRNN], "corrupt-cache", 1, "does not match its sha256"),
    # --- bench.calibrate ---
    ("calibrate", ["--ranks", "1"], None, 2, "--ranks"),
    ("calibrate", ["--ranks", "x"], None, 2, "integer"),
    ("calibrate", ["--ranks", "100000"], None, 2, "--ranks"),
    ("calibrate", ["--iters", "0"], None, 2, "--iters"),
    ("calibrate", ["--warmup", "-1"], None, 2, "--warmup"),
    ("calibrate", ["--sizes", "8"], None, 2, "two different"),
    ("calibrate", ["--sizes", "0,8"], None, 2, "positive byte count"),
    ("calibrate", ["--sizes", "8,abc"], None, 2, "positive byte count"),
    ("calibrate", ["--sizes", "8,64G"], None, 2, "GiB"),
    ("calibrate", ["--backend", "mpi"], None, 2, "--backend"),
    ("calibrate", ["--out", "{tmp}/adir"], "dir", 2, "directory"),
    ("calibrate", ["--out", "{tmp}/out.json"], "fifo-json", 2, "FIFO"),
    ("calibrate", ["--out", "{tmp}/afile/c.json"], "file", 2, "not a directory"),
    ("calibrate", ["--out", "/proc/pgti/c.json"], None, 2, "cannot create"),
    # --- bench.submit ---
    ("submit", [], None, 2, "--scheduler"),
    ("submit", ["--scheduler", "lsf"], None, 2, "--scheduler"),
    ("submit", ["--scheduler", "slurm", "--gpus", "0"], None, 2, "--gpus"),
    (
        "submit",
        ["--scheduler", "slurm", "--gpus", "6", "--out-dir", "{tmp}/j"],
        None,
        2,
        "multiple",
    ),
    ("submit", ["--scheduler", "slurm", "--ranks-per-node", "0"], None, 2, "--ranks-per-node"),
    ("submit", ["--scheduler", "slurm", "--cpus-per-rank", "0"], None, 2, "--cpus-per-rank"),
    ("submit", ["--scheduler", "slurm", "--port", "0"], None, 2, "--port"),
    ("submit", ["--scheduler", "slurm", "--port", "70000"], None, 2, "--port"),
    (
        "submit",
        ["--scheduler", "pbs", "--walltime", "1h", "--out-dir", "{tmp}/j"],
        None,
        2,
        "H:MM:SS",
    ),
    (
        "submit",
        ["--scheduler", "pbs", "--account", "a b", "--out-dir", "{tmp}/j"],
        None,
        2,
        "one word",
    ),
    ("submit", ["--scheduler", "slurm", "--out-dir", "{tmp}/afile"], "file", 2, "--out-dir"),
    ("submit", ["--scheduler", "slurm", "--out-dir", "{tmp}/afile/j"], "file", 2, "--out-dir"),
    ("submit", ["--scheduler", "slurm", "--out-dir", "/proc/pgti"], None, 2, "cannot create"),
    (
        "submit",
        ["--scheduler", "slurm", "--workdir", "{tmp}/none", "--out-dir", "{tmp}/j"],
        None,
        2,
        "workdir",
    ),
    (
        "submit",
        ["--scheduler", "slurm", "--out-dir", "{tmp}/j", "--", "--seed", "-1"],
        None,
        2,
        "--seed",
    ),
    (
        "submit",
        ["--scheduler", "slurm", "--out-dir", "{tmp}/j", "--", "--bogus"],
        None,
        2,
        "unrecognized",
    ),
    (
        "submit",
        ["--scheduler", "slurm", "--datasets", "nope", "--out-dir", "{tmp}/j"],
        None,
        2,
        "unknown profile",
    ),
    # --- bench.plot ---
    ("plot", [], None, 2, "csv"),
    ("plot", ["{tmp}/none.csv"], None, 2, "no such file"),
    ("plot", ["{tmp}/adir"], "dir", 2, "no such file"),
    ("plot", ["{tmp}/r.csv"], "foreign-csv", 2, "not a results CSV"),
    ("plot", ["{tmp}/r.csv"], "binary-csv", 2, "CSV"),
    ("plot", ["{tmp}/r.csv"], "empty-csv", 2, "CSV"),
    ("plot", ["{tmp}/r.csv", "--time", "wall"], "results-csv", 2, "--time"),
    ("plot", ["{tmp}/r.csv", "--out", "{tmp}/afile"], "results-csv+file", 2, "not a directory"),
    ("plot", ["{tmp}/r.csv", "--out", "/proc/pgti"], "results-csv", 2, "cannot create"),
    # --- bench.figures ---
    ("figures", ["--scale", "huge"], None, 2, "--scale"),
    ("figures", ["--only", "figure9"], None, 2, "figure9"),
    ("figures", ["--baseline", "nope"], None, 2, "--baseline"),
    ("figures", ["--out", "{tmp}/afile", "--no-run"], "file", 2, "--out"),
    ("figures", ["--results", "{tmp}/afile", "--no-run"], "file", 2, "--results"),
    ("figures", ["--out", "/proc/pgti", "--no-run"], None, 2, "cannot create"),
]


def _ids(case) -> str:
    command, argv, setup, *_ = case
    return f"{command}:{' '.join(argv)[:60]}:{setup or ''}"


def _tree(root: Path) -> set[str]:
    """Every path under ``root`` except cache lock files (flock targets, kept by design)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.suffix != ".lock"}


def test_the_corpus_is_large_and_covers_every_command():
    assert len(CASES) >= 80
    assert {c[0] for c in CASES} == set(MAINS)
    assert len({_ids(c) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    command, argv, setup, code, text = case
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGTI_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(driver, "measure_rank_baseline", lambda: 300 << 20)
    for name in (setup or "").split("+"):
        if name:
            SETUPS[name](tmp_path)
    before = _tree(tmp_path)
    capsys.readouterr()
    try:
        rc = MAINS[command]([a.replace("{tmp}", str(tmp_path)) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert text in lines[0], lines[0]
    assert _tree(tmp_path) == before, "the command left files behind"


@pytest.mark.parametrize("command", ["run", "train", "calibrate"])
def test_nccl_without_cuda_is_refused_up_front(command, tmp_path, monkeypatch, capsys):
    if CUDA:
        pytest.skip("nccl is valid with CUDA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        MAINS[command](["--backend", "nccl"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "nccl" in err
    assert list(tmp_path.iterdir()) == []


def test_a_corrupted_calibration_leaves_no_system_json(tmp_path, monkeypatch, capsys):
    """The issue's orphan ``.system.json``: a bad calibration stops the sweep before it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "calibration.json").write_text(json.dumps({"alpha_s": "x", "beta_Bps": 1}))
    with pytest.raises(SystemExit) as exc:
        driver.main(["--calibration", "calibration.json", "--out", "r.csv"])
    assert exc.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration.json"]
