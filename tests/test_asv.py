"""The asv suite is well-formed (``asv check``), and its PGT reference baselines compute what
PyTorch Geometric Temporal computes, so the ratios against them mean something."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")  # the peers extra: the PGT-style references

from bench.peers.pgt_reference import (  # noqa: E402
    BatchedDCRNNReference,
    WindowDataset,
    per_sample_loader,
    replicate_edges,
)
from bench.peers.tgcn_reference import TGCNReference  # noqa: E402
from benchmarks.bench_memory import measure_in_child  # noqa: E402
from benchmarks.common import random_series, split_of, strategy_on  # noqa: E402
from pgti_core.batching import WindowSpec, split_starts  # noqa: E402
from pgti_core.models import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("asv") is None and not (Path(sys.executable).parent / "asv").exists(),
                    reason="asv is not installed")  # fmt: skip
def test_asv_check_passes():
    asv = shutil.which("asv") or str(Path(sys.executable).parent / "asv")
    proc = subprocess.run([asv, "check", "--python=same"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "No problems found" in proc.stdout


def test_per_sample_windows_equal_index_batches():
    series = random_series(400, 7)
    index = strategy_on(series, "index", shuffle=False)
    starts = index.plan()[0][:5]
    ds = WindowDataset(index._buf, starts - index._t0, WindowSpec(12, 12))
    x, y = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    xi, yi = index.batch(starts)
    assert torch.equal(x, xi) and torch.equal(y, yi)


def test_per_sample_loader_is_endless_and_shaped():
    series = random_series(200, 5)
    it = iter(
        per_sample_loader(torch.from_numpy(series.values), split_of(series), WindowSpec(12, 12), 8)
    )
    for _ in range(50):  # more batches than the split has
        x, y = next(it)
    assert x.shape == (8, 12, 5, 2) and y.shape == (8, 12, 5, 2)


def test_window_dataset_rejects_overrun():
    with pytest.raises(ValueError, match="overrun"):
        WindowDataset(torch.zeros(30, 2, 1), np.array([0, 10]), WindowSpec(12, 12))


def test_replicate_edges_offsets_each_copy():
    ei = torch.tensor([[0, 1], [1, 2]])
    assert replicate_edges(ei, 3, 2).tolist() == [[0, 1, 3, 4], [1, 2, 4, 5]]


def test_tgcn_reference_equals_tgcn_with_the_same_weights():
    """The PGT-style T-GCN computes our TGCN's function, so the asv ratio compares batching only."""
    series = random_series(50, 9)
    torch.manual_seed(0)
    ours = build_model("tgcn", num_nodes=9, num_features=2, edge_index=series.edge_index,
                       edge_weight=series.edge_weight, lags=6, horizon=4, hidden_size=8)  # fmt: skip
    ref = TGCNReference(9, 2, series.edge_index, series.edge_weight, 4, 8).load_from(ours)
    x = torch.randn(3, 6, 9, 2)
    torch.testing.assert_close(ref(x), ours(x), atol=1e-5, rtol=1e-5)


def test_batched_reference_equals_per_sample():
    """PGT-I's batched DCRNN once convolved only the first sample of a batch: ours must not.
    (Its operator equals PGT 0.56's formula: tests/test_pgt_diffusion.py.)"""
    series = random_series(50, 9)
    model = BatchedDCRNNReference(9, series.edge_index, series.edge_weight, horizon=4)
    x = torch.randn(3, 6, 9, 2)
    batched = model(x)
    single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert batched.shape == (3, 4, 9, 2)
    assert torch.allclose(batched, single, atol=1e-6)


@pytest.mark.slow
def test_peak_child_counts_what_standard_holds():
    got = measure_in_child("standard", steps=3000, nodes=20)
    windows = sum(len(v) for v in split_starts(3000, WindowSpec(12, 12)).values())
    assert got["resident_bytes"] == windows * 24 * 20 * 2 * 4
    assert got["peak_bytes"] >= 0.9 * got["resident_bytes"]


_REUSE_CHILD = """
import resource, sys, torch
from benchmarks.common import keep_freed_memory_mapped
applied = keep_freed_memory_mapped() if sys.argv[1] == "kept" else None
for _ in range(2):  # the first round maps the pages; the second counts what re-use faults in
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.ones(16 << 20).sum()  # 64 MiB, freed at once; the default maps it anew each time
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(applied, faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_mapped_memory_is_reused_without_page_faults():
    """The time_ benchmarks' allocator setting takes re-used memory's page faults out of a timing,
    where the default faults every page of a large tensor in again."""
    out = {}
    for mode in ("default", "kept"):
        proc = subprocess.run([sys.executable, "-c", _REUSE_CHILD, mode], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        out[mode] = proc.stdout.split()
    pages = 5 * (64 << 20) // 4096
    assert out["kept"][0] == "True"
    assert int(out["default"][1]) > pages // 2  # every 64 MiB tensor faults its pages in anew
    assert int(out["kept"][1]) < pages // 50


def test_one_sample_per_round_lets_asv_flag_a_2x_change_and_not_host_states():
    """With one sample per round, asv's test compares processes: five processes per commit in
    the host's two speed states (76-84 and 95-115 us here) are not a change, five 2x slower
    ones are; with six a side asv could flag nothing at all (why ROUNDS is 5)."""
    stats = pytest.importorskip("asv._stats")
    compute_stats = pytest.importorskip("asv_runner.statistics").compute_stats
    from benchmarks.bench_batching import BatchAssembly
    from benchmarks.bench_epoch import ShortEpoch
    from benchmarks.bench_models import TrainStep
    from benchmarks.common import ROUNDS

    def differ(a: list[float], b: list[float]) -> bool:
        return stats.is_different(a, b, compute_stats(a, 1)[1], compute_stats(b, 1)[1])

    for cls in (BatchAssembly, TrainStep, ShortEpoch):
        assert (cls.repeat, cls.rounds, cls.number) == (1, ROUNDS, 1), cls
    states = [80.0, 104.0, 78.0, 97.0, 112.0, 83.0, 99.0]
    same, other = states[:ROUNDS], states[-ROUNDS:][::-1]
    assert not differ(same, other)
    assert differ(same, [2 * t for t in other])
    six = states[:6]
    assert not differ(six, [2 * t for t in six])  # asv's p < 0.002 is out of reach at 6 v 6
