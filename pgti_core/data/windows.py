"""Window geometry (lags in, horizon out) and the chronological split of window start indices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class WindowSpec:
    """A sample is ``lags`` input steps followed by ``horizon`` target steps.

    Args:
        lags: input steps (12 for traffic, as in DCRNN).
        horizon: target steps (12 for traffic).
    """

    lags: int = 12
    horizon: int = 12

    def __post_init__(self) -> None:
        if self.lags < 1:
            raise ValueError(f"lags: must be >= 1, got {self.lags}")
        if self.horizon < 1:
            raise ValueError(f"horizon: must be >= 1, got {self.horizon}")

    @property
    def length(self) -> int:
        """Steps one sample spans."""
        return self.lags + self.horizon

    def num_samples(self, num_steps: int) -> int:
        """Windows that fit in a series of ``num_steps`` steps."""
        return num_steps - self.length + 1


def split_starts(
    num_steps: int, spec: WindowSpec, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
) -> dict[str, np.ndarray]:
    """Chronological train/val/test split of window start indices (DCRNN's rounding).

    Test and train sizes are rounded, validation takes the rest, so every start index lands in
    exactly one split.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(
            f"fractions: expected three non-negative numbers summing to 1, got {fractions}"
        )
    total = spec.num_samples(num_steps)
    if total < 1:
        raise ValueError(
            f"lags+horizon: windows of {spec.length} steps do not fit in a series of {num_steps} steps"
        )
    n_test = round(total * fractions[2])
    n_train = round(total * fractions[0])
    n_val = total - n_test - n_train
    starts = np.arange(total, dtype=np.int64)
    out = {
        "train": starts[:n_train],
        "val": starts[n_train : n_train + n_val],
        "test": starts[n_train + n_val :],
    }
    for name, s in out.items():
        if fractions[SPLITS.index(name)] > 0 and len(s) == 0:
            raise ValueError(
                f"{name} split: empty ({total} windows in a series of {num_steps} steps); "
                "use a longer series or shorter windows"
            )
    return out
