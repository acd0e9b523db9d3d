"""asv benchmarks of pgti (``asv run``; configuration in ``asv.conf.json`` at the repository root).

One module per area: batch assembly, training steps, peak host memory, short epochs.
"""
