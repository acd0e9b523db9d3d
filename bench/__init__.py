"""pgti's scaling-study harness."""
