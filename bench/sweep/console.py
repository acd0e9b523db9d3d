"""What the sweep prints for people: one line per finished point and the ``--dry-run`` plan."""

from __future__ import annotations

from bench.sweep.plan import SweepPoint
from pgti_core.models.registry import model_label


def point_line(point: SweepPoint, row: dict) -> str:
    """One human line per finished point."""
    if row["status"] != "ok":
        return f"{point.label}: {row['status']} - {row['error']}"
    pss = row.get("host_peak_pss_max_rank") or 0
    return (
        f"{point.label} [{point.mode}]: epoch {row['epoch_s_mean']:.2f} s, "
        f"{row['samples_per_s']:.0f} samples/s, peak PSS/rank {pss / 2**20:.0f} MiB, "
        f"best val MAE {row['best_val_mae']:.3f}"
    )


def print_plan(points: list[SweepPoint], predicted: dict, budget: int, baseline: int) -> None:
    print(
        f"{'dataset':<28} {'strategy':<12} {'model':<16} {'P':>4} {'mode':<9} {'ranks':>5} {'pred. node peak':>16}  note"
    )
    for p in points:
        pred = predicted[p.key]
        note = "skip: over available memory" if pred > budget else ""
        if p.validation:
            note = (note + "; " if note else "") + "validation: checks the projection"
        print(
            f"{p.dataset:<28} {p.strategy:<12} {model_label(p.model, p.diffusion):<16} {p.world_size:>4} {p.mode:<9} "
            f"{p.local_ranks:>5} {pred / 2**30:>12.2f} GiB  {note}"
        )
    print(
        f"available for ranks: {budget / 2**30:.1f} GiB; idle rank measured at {baseline / 2**20:.0f} MiB private"
    )
    print("predictions: runtime + data only; a real run adds the model probe's training memory")
