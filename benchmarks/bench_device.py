"""Device paths on CUDA (asv skips these where there is none): one epoch slice of batches per
delivery path, and one dcrnn-paper training step eager against its captured CUDA graph. The GPU
check (``python -m bench.gpu_check``) runs each once when asv itself is not installed."""

from __future__ import annotations

import torch

from bench.gpu.graph_step import WARMUP, TrainStep
from bench.gpu.paths import PATHS

from .common import model_for, random_series, strategy_on

STEPS = 8000
"""Series length at PeMS-Bay's 325 nodes (21 MB): enough windows for the batches timed."""
BATCHES = 20


def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        raise NotImplementedError("needs a CUDA device")  # asv's way of skipping a benchmark


class DeviceBatches:
    """Seconds to deliver :data:`BATCHES` batches on the device, per path."""

    params = [list(PATHS)]
    param_names = ["path"]

    def setup(self, path: str) -> None:
        _needs_cuda()
        kind, extra = PATHS[path]
        series = random_series(STEPS, 325, profile="pems-bay")
        self.strategy = strategy_on(series, kind, device="cuda", **extra)
        self.plan = self.strategy.plan()[:BATCHES]

    def time_batches(self, path: str) -> None:
        for _ in self.strategy.batches(self.plan):
            pass
        torch.cuda.synchronize()


class DeviceStep:
    """Seconds per dcrnn-paper training step on gpu-index batches, eager or a replayed graph."""

    params = [["eager", "graph"]]
    param_names = ["mode"]

    def setup(self, mode: str) -> None:
        _needs_cuda()
        series = random_series(STEPS, 325, profile="pems-bay")
        strategy = strategy_on(series, "gpu-index", device="cuda")
        self.x, self.y = strategy.batch(strategy.plan()[0])
        model = model_for("dcrnn-paper", series).cuda()
        self.step = TrainStep(model, strategy.normalizer, self.x.shape, self.y.shape, "cuda", mode)
        for _ in range(WARMUP + 1):  # past the warm-up, so the graph is captured
            self.step(self.x, self.y)
        torch.cuda.synchronize()

    def time_step(self, mode: str) -> None:
        self.step(self.x, self.y)
        torch.cuda.synchronize()
