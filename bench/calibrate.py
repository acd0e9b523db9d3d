"""``python -m bench.calibrate``: measure the all-reduce latency and bandwidth for the projection model (the work lives in :mod:`bench.perf.calibrate`)."""

import sys

from bench.perf.calibrate import main

if __name__ == "__main__":
    sys.exit(main())
