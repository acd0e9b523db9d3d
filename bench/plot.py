"""``python -m bench.plot``: speedup, efficiency and memory plots and summary.md from results CSVs (the work lives in :mod:`bench.report.plot`)."""

import sys

from bench.report.plot import main

if __name__ == "__main__":
    sys.exit(main())
