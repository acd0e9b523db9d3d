"""Short training epochs through the real loop (:func:`pgti_core.train.fit`): seconds per strategy
(what the 50 ms host-memory sampler costs an epoch: :mod:`.targets`)."""

from __future__ import annotations

from pgti_core.train.loop import fit

from .common import (
    OneSamplePerRound,
    keep_freed_memory_mapped,
    model_for,
    normalizer_of,
    random_series,
    strategy_on,
)

STRATEGIES = ["standard", "index", "gpu-index", "partitioned"]
STEPS, NODES = 3000, 207
MAX_STEPS = 8
"""Training steps per short epoch; validation is one batch."""


class EpochFixture:
    """A dcrnn-paper model and ``strategy``'s train/val splits of a METR-LA-width series."""

    def _build(self, strategy: str) -> None:
        series = random_series(STEPS, NODES)
        self.normalizer = normalizer = normalizer_of(series)
        self.train = strategy_on(series, strategy, normalizer=normalizer)
        self.val = strategy_on(
            series, strategy, "val", limit=64, normalizer=normalizer, shuffle=False
        )
        self.model = model_for("dcrnn-paper", series)

    def epoch(self) -> tuple[float, int]:
        """Wall seconds of the training part of one short epoch, and the samples it saw."""
        res = fit(self.model, self.train, self.val, self.normalizer, epochs=1, max_steps=MAX_STEPS)
        rec = res.epochs[0]
        return rec.wall_s, sum(rec.samples)


class ShortEpoch(OneSamplePerRound, EpochFixture):
    """Seconds per short epoch (:data:`MAX_STEPS` training steps and one validation batch) through
    the real loop, per strategy.

    A ``time_`` benchmark, not a samples/s ``track_``: asv keeps one number per track and run, and
    that number (the median of 5 epochs) moved 1152 -> 1466 samples/s between two runs of one
    commit here, while a time gets one sample per round (:class:`OneSamplePerRound`), rounds
    interleaved between commits, and asv's significance test.
    """

    params = STRATEGIES
    param_names = ["strategy"]
    timeout = 300

    def setup(self, strategy: str) -> None:
        keep_freed_memory_mapped()
        self._build(strategy)
        self.epoch()  # warm-up: allocator, caches, lazy init

    def time_epoch(self, strategy: str) -> None:
        fit(self.model, self.train, self.val, self.normalizer, epochs=1, max_steps=MAX_STEPS)
