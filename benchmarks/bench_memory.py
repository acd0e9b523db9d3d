"""Peak host memory per strategy, each measured in a fresh child process on a METR-LA-shaped series
(target: index cuts the peak of standard by >= 95% at 12/12 windows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pgti_core.instruments.memory import HostMemorySampler

from .common import normalizer_of, random_series, strategy_on

STRATEGIES = ["standard", "index", "gpu-index", "partitioned"]
STEPS, NODES = 34272, 207
"""METR-LA's shape (57 MB raw float32; standard batching holds ~1.4 GB)."""

_CHILD = (
    "import json, sys, torch; torch.set_num_threads(1); sys.path.insert(0, sys.argv[4]); "
    f"from {__name__} import measure_peak; "
    "print(json.dumps(measure_peak(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))"
)
"""The child imports this module under the name asv (or the tests) imported it, from this tree."""
_SUITE_PARENT = str(Path(__file__).resolve().parents[1])


def measure_peak(strategy: str, steps: int = STEPS, nodes: int = NODES) -> dict:
    """In this process: build ``strategy`` for train, val and test and cut two batches; return the
    peak host bytes above the baseline taken once the raw series sits in memory (so only what the
    strategy adds is counted), from VmHWM (exact) where Linux gives it, else the sampler's peak."""
    series = random_series(steps, nodes)
    normalizer = normalizer_of(series)
    sampler = HostMemorySampler(interval_s=0.05).start()
    built = [
        strategy_on(series, strategy, split, normalizer=normalizer, shuffle=split == "train")
        for split in ("train", "val", "test")
    ]
    for starts in built[0].plan()[:2]:
        built[0].batch(starts)
    report = sampler.stop()
    peak_rss = (
        max(report.peak.rss, report.vmhwm or 0) if report.vmhwm_since_start else report.peak.rss
    )
    return {
        "strategy": strategy,
        "raw_bytes": series.nbytes,
        "peak_bytes": peak_rss - report.baseline.rss,
        "peak_pss_bytes": report.above_baseline("pss"),
        "resident_bytes": sum(s.resident_bytes()["host"] for s in built),
    }


def measure_in_child(strategy: str, steps: int = STEPS, nodes: int = NODES) -> dict:
    """:func:`measure_peak` in a fresh interpreter (clean peaks); raises if the child fails."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, strategy, str(steps), str(nodes), _SUITE_PARENT],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peak-memory child for {strategy} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class PeakHostMemory:
    """Peak host bytes a strategy adds (train + val + test), and its share of standard's."""

    params = STRATEGIES
    param_names = ["strategy"]
    timeout = 900

    def setup_cache(self) -> dict[str, dict]:
        return {s: measure_in_child(s) for s in STRATEGIES}

    def track_peak_host_bytes(self, peaks: dict[str, dict], strategy: str) -> int:
        return peaks[strategy]["peak_bytes"]

    track_peak_host_bytes.unit = "bytes"

    def track_peak_vs_standard(self, peaks: dict[str, dict], strategy: str) -> float:
        """Peak over standard's peak: index must stay <= 0.05 (a >= 95% cut)."""
        return peaks[strategy]["peak_bytes"] / peaks["standard"]["peak_bytes"]

    track_peak_vs_standard.unit = "ratio"
