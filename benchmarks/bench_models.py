"""Training steps: seconds per Adam step of each model at B = 64 on a PeMS-Bay-shaped graph (325
sensors; the ratios against the PGT peers: :mod:`.targets`)."""

from __future__ import annotations

from pgti_core.models.registry import MODELS

from .common import (
    OneSamplePerRound,
    keep_freed_memory_mapped,
    random_series,
    train_step,
)

NODES = 325
STEPS = 100
"""Only the graph matters here; the step's batch is random."""
WARMUP_STEPS = 2
"""Steps before the timed one: a process's second step still ran 1.1-1.6x its later ones here
(tgcn 657-713 against 587-697 ms, dcrnn-paper 56 against 35-41 ms; heap growth, page faults)."""


def peer_series():
    """The random PeMS-Bay-shaped series whose graph the steps run on."""
    return random_series(STEPS, NODES, profile="pems-bay")


class TrainStep(OneSamplePerRound):
    """Seconds per training step (forward, masked MAE, backward, Adam) of each of our models.

    One step per round after :data:`WARMUP_STEPS` in the setup (:class:`OneSamplePerRound`); the
    PGT peers' steps (1-10 s) are timed only against ours, in :class:`.targets.PeerSpeedup`.
    """

    params = list(MODELS)
    param_names = ["model"]
    timeout = 600

    def setup(self, model: str) -> None:
        keep_freed_memory_mapped()
        self.step = train_step(model, peer_series())
        for _ in range(WARMUP_STEPS):
            self.step()

    def time_train_step(self, model: str) -> None:
        self.step()
