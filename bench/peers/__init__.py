"""Peer implementations the benchmarks compare against (PyTorch Geometric Temporal style)."""
