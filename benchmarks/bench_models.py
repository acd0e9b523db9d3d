"""Training steps: one Adam step per model at B = 64 on a PeMS-Bay-shaped graph (325 sensors),
and the PGT-I cell against PGT's ``BatchedDCRNN(2, 2, K=3)`` (target: >= 5x, aim 10x)."""

from __future__ import annotations

from pgti_core.models.registry import MODELS

from .common import PGT_REFERENCE, best_time, median_ratio, random_series, train_step

NODES = 325
STEPS = 100
"""Only the graph matters here; the step's batch is random."""


def _series():
    return random_series(STEPS, NODES, profile="pems-bay")


class TrainStep:
    """Seconds per training step (forward, masked MAE, backward, Adam) per model."""

    params = [*MODELS, PGT_REFERENCE]
    param_names = ["model"]
    timeout = 600

    def setup(self, model: str) -> None:
        self.step = train_step(model, _series())
        self.step()

    def time_train_step(self, model: str) -> None:
        self.step()


class PaperCellSpeedup:
    """Step-time ratio of PGT's batched DCRNN over our ``dcrnn-paper`` (the same cell)."""

    timeout = 300

    def setup(self) -> None:
        series = _series()
        self.ours = train_step("dcrnn-paper", series)
        self.pgt = train_step(PGT_REFERENCE, series)

    def track_speedup_vs_pgt(self) -> float:
        return median_ratio(lambda: best_time(self.pgt, repeat=1, min_time=0.0),
                            lambda: best_time(self.ours, repeat=1, min_time=0.0), samples=5)  # fmt: skip

    track_speedup_vs_pgt.unit = "x"
