"""``python -m bench.run``: sweep world sizes x datasets x strategies x models, one CSV row a point (the work lives in :mod:`bench.sweep.driver`)."""

import sys

from bench.sweep.driver import main

if __name__ == "__main__":
    sys.exit(main())
