"""The performance model: all-reduce calibration and projection beyond this host."""
