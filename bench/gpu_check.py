"""``python -m bench.gpu_check``: every CUDA path of pgti run, checked and measured in one command
of about 8 minutes on one GPU (the work lives in :mod:`bench.gpu`); ``--dry-run`` prints the plan."""

import sys

from bench.gpu.check import main

if __name__ == "__main__":
    sys.exit(main())
