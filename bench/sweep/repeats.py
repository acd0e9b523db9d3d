"""Repeats of one sweep point and their 95% confidence interval.

``--repeats N`` runs N repeats; ``--repeats auto`` repeats until the 95% interval of the mean
epoch time (Student t, as a careful benchmarker reports a mean of few runs) is within
``target`` of the mean, or ``cap`` repeats ran. Each row carries the interval of the repeats up to
it and, on the last, why the repeats stopped.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev

import pandas as pd

from bench.sweep.plan import SweepPoint
from bench.sweep.results import DONE_STATUSES, read_results

# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """Student's t 97.5% quantile for ``df`` >= 1 degrees of freedom (Cornish-Fisher beyond 30)."""
    if df < 1:
        raise ValueError(f"df: must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.95996 + 2.3722 / df


def half95(sd: float, n: int) -> float:
    """Student-t 95% half-width of a mean of ``n`` runs with sample std ``sd`` (NaN below two)."""
    return t975(n - 1) * sd / math.sqrt(n) if n >= 2 else math.nan


def ci95(values: Sequence[float]) -> float | None:
    """Half-width of the 95% confidence interval of the mean of ``values`` (None below two)."""
    if len(values) < 2:
        return None
    return half95(stdev(values), len(values))


@dataclass(frozen=True)
class RepeatRule:
    """When the repeats of one point stop.

    Args:
        cap (int): most repeats (``--repeats N`` runs exactly N: ``target`` None).
        target (float | None, default None): stop once the 95% half-width is <= ``target`` x mean.
        min_repeats (int, default 3): fewest repeats before the interval is trusted (two runs
            that happen to agree say little; t at 1 degree of freedom is 12.7).
    """

    cap: int
    target: float | None = None
    min_repeats: int = 3

    def stop(self, values: Sequence[float]) -> str | None:
        """``"target"`` or ``"cap"`` when no further repeat is needed, else None."""
        half = ci95(values)
        if (
            self.target is not None
            and len(values) >= self.min_repeats
            and half is not None
            and half <= self.target * abs(mean(values))
        ):
            return "target"
        return "cap" if len(values) >= self.cap else None


def run_repeats(
    points: Sequence[SweepPoint],
    rule: RepeatRule,
    previous: Mapping[str, float | None],
    measure: Callable[[SweepPoint, list[float]], float | None],
) -> str:
    """Run the repeats of one configuration in order until ``rule`` stops them.

    Args:
        points (Sequence[SweepPoint]): its repeats 0..cap-1, in order.
        rule (RepeatRule): when to stop.
        previous (Mapping[str, float | None]): epoch times of repeats already in the CSV by
            ``point_key`` (None: finished without one, e.g. oom), reused on resume.
        measure (callable): runs one repeat given the epoch times so far, writes its row and
            returns its epoch time (None when it produced none).

    Returns why the repeats stopped: ``"target"`` or ``"cap"`` (a repeat without a time, e.g. a
    failed one, counts towards the cap but not the interval).
    """
    values: list[float] = []
    for point in points:
        stop = rule.stop(values)
        if stop:
            return stop
        epoch = previous[point.key] if point.key in previous else measure(point, values)
        if epoch is not None:
            values.append(epoch)
    return rule.stop(values) or "cap"


def annotate(row: dict, values: Sequence[float], rule: RepeatRule) -> None:
    """Fill ``row``'s interval columns given the epoch times of the repeats before it."""
    if row.get("status") != "ok" or row.get("epoch_s_mean") is None:
        return
    upto = [*values, row["epoch_s_mean"]]
    row["epoch_s_ci95"] = ci95(upto)
    row["repeats_stop"] = rule.stop(upto) or ""


def repeat_rule(args: argparse.Namespace) -> RepeatRule:
    """The rule of ``--repeats N`` (exactly N) or ``--repeats auto`` (to +-``--ci-target``)."""
    if args.repeats == "auto":
        return RepeatRule(cap=args.max_repeats, target=args.ci_target)
    return RepeatRule(cap=args.repeats)


def repeat_groups(points: Sequence[SweepPoint]) -> list[list[SweepPoint]]:
    """The points grouped by configuration (repeats of one configuration together, in order)."""
    groups: dict[tuple, list[SweepPoint]] = {}
    for p in points:
        groups.setdefault((p.config_key, p.mode, p.validation), []).append(p)
    return [sorted(g, key=lambda p: p.repeat) for g in groups.values()]


def previous_epochs(path: Path) -> dict[str, float | None]:
    """Epoch times of the points already finished in ``path`` (ok or oom), by ``point_key``;
    failed and skipped points are left out, so they run again."""
    if not path.exists():
        return {}
    df = read_results(path)
    done = df[df["status"].isin(DONE_STATUSES)]
    return {
        key: (None if status != "ok" or pd.isna(epoch) else float(epoch))
        for key, status, epoch in zip(
            done["point_key"], done["status"], done["epoch_s_mean"], strict=True
        )
    }
