"""Training: the loop, one-configuration runs and the masked metrics."""

from pgti_core.train.loop import EpochRecord, TrainResult, evaluate, fit
from pgti_core.train.run import RunConfig, RunOutcome, World, run

__all__ = [
    "EpochRecord",
    "TrainResult",
    "evaluate",
    "fit",
    "RunConfig",
    "RunOutcome",
    "World",
    "run",
]
