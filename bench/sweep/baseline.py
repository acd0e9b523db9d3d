"""The per-rank runtime baseline: what an idle rank costs before it builds any data (measured)."""

from __future__ import annotations

import subprocess
import sys

_PROBE = (
    "import bench.sweep.worker, psutil;"
    "m = psutil.Process().memory_full_info();"
    "print(getattr(m, 'uss', m.rss))"
)


def measure_rank_baseline() -> int:
    """Private bytes (USS) of a fresh process that imported everything a rank imports (torch,
    pgti): what each rank adds to a node whose parent already maps the shared libraries."""
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])
