"""``python -m bench.gpu.prepare --datasets pems-bay,pems``: create the datasets' cache entries
(generated once, then memory-mapped by every run), so a later sweep's preparation only opens them.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.sweep.args import split_dataset_list
from pgti_core.data.datasets import load_dataset, parse_dataset_spec


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu.prepare", description=__doc__)
    p.add_argument("--datasets", required=True, help="comma-separated profiles or specs")
    p.add_argument("--seed", type=int, default=0, help="generator seed (bench.run's default)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        specs = [parse_dataset_spec(d) for d in split_dataset_list(args.datasets)]
    except ValueError as e:
        parser.error(str(e))
    for spec in specs:
        t0 = time.perf_counter()
        series = load_dataset(spec, seed=args.seed)
        print(
            f"{spec.label}: {series.nbytes / 1e9:.2f} GB ready in {time.perf_counter() - t0:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
