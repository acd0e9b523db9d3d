"""``python -m bench.submit``: write SLURM/PBS job scripts for a sweep (the work lives in :mod:`bench.jobs.submit`)."""

import sys

from bench.jobs.submit import main

if __name__ == "__main__":
    sys.exit(main())
