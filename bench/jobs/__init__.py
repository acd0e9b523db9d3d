"""Cluster jobs: SLURM and PBS scripts for a sweep."""
