"""``python -m bench.figures``: the PGT-I paper's figures and tables, measured here (the work lives in :mod:`bench.report.figures`)."""

import sys

from bench.report.figures import main

if __name__ == "__main__":
    sys.exit(main())
